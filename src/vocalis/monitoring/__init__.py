"""Production monitoring: the drift reference stored in an artifact, drift reports of the prediction log
against it (Evidently), and the service's drift endpoint and gauges.

Alert rules and dashboards live outside the package, in ``monitoring/`` at the repository root.
"""
