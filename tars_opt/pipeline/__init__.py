"""The Optimizer (prepare -> send -> finish), the stage protocol, classification, the
A/B holdout and the decision trace."""
