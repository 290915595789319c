"""Reports for people: the model card and its plots.

`plots` and `card` are leaves (numbers in, figures or markdown out; tasks draw their figures with
`plots`); `model_card` assembles a training job's card at registration (registration.py).
"""
