"""Hessian spectra of a training loss: HVP operator, top-k eigen solver and a warm-started tracker.

Split over hvp.py (HVPOperator), eigensolver.py (top_eigenpairs, EigResult, MatrixOperator)
and tracker.py (EigenTracker); import them from here.
"""
from samedge.eigensolver import EigResult, MatrixOperator, Operator, top_eigenpairs
from samedge.hvp import HVPOperator
from samedge.tracker import EigenTracker

__all__ = ["EigResult", "EigenTracker", "HVPOperator", "MatrixOperator", "Operator", "top_eigenpairs"]
