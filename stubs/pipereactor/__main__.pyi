# `python -m pipereactor`: the command-line runner; nothing to import here.
