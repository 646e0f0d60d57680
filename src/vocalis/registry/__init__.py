"""The model registry: MLflow model versions, stages as aliases, the promotion gate, serving by alias.

Import the submodules directly (:mod:`.registry`, :mod:`.gate`, :mod:`.resolve`, :mod:`.pyfunc`): they
import MLflow, which the service only needs when it serves a ``models:/`` URI.
"""
