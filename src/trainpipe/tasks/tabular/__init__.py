"""What the table tasks (classification, regression) share: nets, the deployable FeatureModel,
the LightningModule over a head, the predictor and the MLflow pyfunc."""
