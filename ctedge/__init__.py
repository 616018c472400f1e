"""ctedge: scanner-side lung CT triage on the edge.

Decision support only, not a medical device.
"""

__version__ = "0.1.0"
