"""The event-driven pipeline: drop -> convert -> fine-tune -> deploy -> evaluate -> promote.

Services called by the function triggers: ``intake.accept_dataset``, ``training.start_training``,
``advance.advance_all_runs``, ``scheduled.evaluate_production``, ``status.collect_status``.
"""
