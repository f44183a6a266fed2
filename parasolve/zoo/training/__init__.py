"""The scripts that trained the shipped models (``python -m parasolve.zoo.training.train_digits``)."""
