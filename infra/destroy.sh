#!/usr/bin/env bash
# Remove a visiontune stack from Azure: `make destroy STACK=dev` runs this.
#
#   infra/destroy.sh [STACK]        (default STACK: dev)
#
# Asks for the stack name as confirmation (CONFIRM=<stack> answers it without a terminal), then
#   1. pulumi destroy: every resource of the stack, the storage account (datasets, reports) included;
#   2. az cognitiveservices account purge: Azure soft-deletes a Cognitive Services / Azure OpenAI account
#      and keeps its name (and quota) for 48 hours; purging frees both at once (Learn: "Recover or purge
#      deleted Azure AI services resources");
#   3. pulumi stack rm: the stack's state and config (Pulumi.<stack>.yaml stays on disk).
set -euo pipefail

STACK="${1:-${STACK:-dev}}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

command -v az >/dev/null || fail "the Azure CLI (az) is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli"
command -v pulumi >/dev/null || fail "pulumi is not installed: https://www.pulumi.com/docs/install/"
az account show --query id -o tsv >/dev/null 2>&1 || fail "not logged in to Azure: run 'az login' (and 'az account set -s <subscription>')"
pulumi whoami >/dev/null 2>&1 || fail "not logged in to Pulumi: run 'pulumi login' (or 'pulumi login --local')"
pulumi stack select "$STACK" >/dev/null 2>&1 || fail "no Pulumi stack '$STACK' here: nothing to destroy"

# The names are read before anything is deleted: after 'pulumi destroy' the outputs are gone.
RESOURCE_GROUP="$(pulumi stack output resourceGroup --stack "$STACK" 2>/dev/null || true)"
ACCOUNT="$(pulumi stack output openaiAccount --stack "$STACK" 2>/dev/null || true)"
LOCATION=""
if [ -n "$RESOURCE_GROUP" ] && [ -n "$ACCOUNT" ]; then
  LOCATION="$(az cognitiveservices account show --resource-group "$RESOURCE_GROUP" --name "$ACCOUNT" --query location -o tsv 2>/dev/null || true)"
fi

cat <<MSG

This deletes stack '$STACK' from Azure for good:
  resource group   ${RESOURCE_GROUP:-<none recorded>} (storage account with every dataset and report, function app, monitoring)
  Azure OpenAI     ${ACCOUNT:-<none recorded>} (fine-tuned models, files, deployments), then purged
Download what you want to keep first (reports: visiontune report <dataset> --out <dir>).
MSG
answer="${CONFIRM:-}"
if [ -z "$answer" ]; then
  [ -t 0 ] || fail "no confirmation: run it in a terminal, or set CONFIRM=$STACK to confirm without one"
  read -r -p "Type the stack name ($STACK) to confirm: " answer
fi
[ "$answer" = "$STACK" ] || fail "confirmation '$answer' does not match the stack name '$STACK': nothing was deleted"

say "pulumi destroy (several minutes)"
pulumi destroy --yes --stack "$STACK" || fail "pulumi destroy failed: see the error above. If Azure refuses to delete the OpenAI account while deployments exist, delete them (az cognitiveservices account deployment delete -g $RESOURCE_GROUP -n $ACCOUNT --deployment-name <name>) and run 'make destroy STACK=$STACK' again"

if [ -n "$ACCOUNT" ]; then
  if [ -z "$LOCATION" ]; then  # already deleted before this run: the soft-deleted entry knows its region
    LOCATION="$(az cognitiveservices account list-deleted --query "[?name=='$ACCOUNT'].location | [0]" -o tsv 2>/dev/null || true)"
  fi
  if [ -n "$LOCATION" ]; then
    say "purging the soft-deleted Azure OpenAI account $ACCOUNT ($LOCATION): frees its name now instead of in 48 h"
    az cognitiveservices account purge --location "$LOCATION" --resource-group "$RESOURCE_GROUP" --name "$ACCOUNT" \
      || fail "purge failed: run 'az cognitiveservices account purge --location $LOCATION --resource-group $RESOURCE_GROUP --name $ACCOUNT' once the deletion has finished"
  else
    echo "    no soft-deleted account named $ACCOUNT found: nothing to purge"
  fi
fi

say "removing the stack's state"
pulumi stack rm --yes "$STACK" >/dev/null
say "stack '$STACK' is gone"
