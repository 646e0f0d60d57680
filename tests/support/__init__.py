"""What the tests share: a tiny run trained by the real trainer, audio writers, data trees, a served model.

Importable as ``support`` because pytest puts ``tests/`` on ``sys.path`` (``pythonpath`` in pyproject.toml).
"""
