"""Method plug-ins; importing this package registers every method."""

from mmbalance.methods import ogm_ge, plain  # noqa: F401  (registration side effects)
from mmbalance.methods.base import METHODS, Method, MethodContext, build_method, true_class_scores

__all__ = ["METHODS", "Method", "MethodContext", "build_method", "true_class_scores"]
