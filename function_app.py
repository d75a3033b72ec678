"""The Azure Functions entry point (Python v2 model): registers the blueprints and nothing else."""

import azure.functions as func

from functions.approval import bp as approval_bp
from functions.classify import bp as classify_bp
from functions.datasets import bp as datasets_bp
from functions.shards import bp as shards_bp
from functions.status import bp as status_bp
from functions.timers import bp as timers_bp
from functions.training import bp as training_bp

app = func.FunctionApp()
for blueprint in (datasets_bp, shards_bp, training_bp, timers_bp, status_bp, classify_bp, approval_bp):
    app.register_functions(blueprint)
