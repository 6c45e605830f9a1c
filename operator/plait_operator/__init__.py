"""The plait controller: a kopf operator that runs ``WorkflowInstance``s on the engine core.

It never imports user code: it orchestrates from ``WorkflowDefinition`` data, checkpoints every
step into the instance's status, and hands steps to workers as ``WorkflowTask`` records.
Started by ``plait operator`` (:mod:`plait_operator.main`).
"""
