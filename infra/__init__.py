"""The Pulumi program that provisions visiontune on Azure (entry point: ``infra/__main__.py``).

One module per concern (storage, openai_account, functionapp, monitoring, rbac, events), composed by
``infra.component.VisionTune``; every configuration value is read in ``infra.config``.
"""
