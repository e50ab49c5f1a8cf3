"""Method plug-ins, one file each; importing this package registers every method."""

from mmbalance.methods.base import METHODS, Method, MethodContext, build_method, true_class_scores
from mmbalance.plugins import import_submodules

import_submodules(__name__)

__all__ = ["METHODS", "Method", "MethodContext", "build_method", "true_class_scores"]
