"""Commands that are not Hydra jobs (argparse): each module has `main(args) -> exit code`."""
