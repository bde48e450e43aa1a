"""Staged rollouts of artifacts (docs/rollout.md).

``effective`` is the rule the agents share with the operator (which generation a node delivers); ``plan`` is the
operator's pure state machine and node choice; ``snapshot`` builds the ConfigMap that keeps the stable generation;
``driver`` wires them into the status reconciler. Nothing is imported here, so an agent that imports
``falco_operator.rollout.effective`` pulls in no operator machinery.
"""
