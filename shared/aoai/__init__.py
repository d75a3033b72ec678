"""The Azure OpenAI client layer: clients, files, fine-tuning jobs, deployments and scoring.

Every call that creates something remote looks for it first (a file by name, size and purpose; a job by
its training file; a deployment by its name; a batch by its input file), so replays are safe. Errors
carry the service's own code and message (``shared.aoai.errors``).
"""
