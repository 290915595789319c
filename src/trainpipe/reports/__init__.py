"""Reports for people: the model card and its plots, the summary a job prints, the terminal output.

`plots` and `card` are leaves (numbers in, figures or markdown out; a task draws its own figures,
`Task.figures`); `model_card` assembles a training job's card at registration (registration.py);
`summary` is the rows of a job's final summary, `terminal` prints it and the config tree.
"""
