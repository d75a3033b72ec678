#!/usr/bin/env bash
# Provision visiontune on Azure and publish the function app: `make deploy STACK=dev` runs this.
#
#   infra/deploy.sh [STACK]        (default STACK: dev)
#
# Needs `az` (logged in: az login) and `pulumi` (logged in: pulumi login, or pulumi login --local), and
# the project virtualenv (.venv, made by `make setup`). Safe to run again: the first run creates
# everything, later runs update the infrastructure and publish the current code.
#
#   phase 1  pulumi up                 every resource; on a new stack without Event Grid subscriptions
#   publish  zip the app root (python -m infra.package), upload it with a remote build (Flex Consumption)
#   phase 2  pulumi up with visiontune:eventGridSubscriptions=true: the blob-trigger subscriptions, which
#            need the blobs_extension key that exists only once the code runs
set -euo pipefail

STACK="${1:-${STACK:-dev}}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"
PACKAGE="${PACKAGE:-$ROOT/dist/app.zip}"
KEY_WAIT_SECONDS="${KEY_WAIT_SECONDS:-600}"
KEY_POLL_SECONDS="${KEY_POLL_SECONDS:-15}"
PUBLISH_ATTEMPTS="${PUBLISH_ATTEMPTS:-4}"
PUBLISH_RETRY_SECONDS="${PUBLISH_RETRY_SECONDS:-60}"
# One publish (upload + remote build) may take this long; past it the az call is stopped. `az ... --timeout`
# bounds only its status polling, and the upload itself can hang on a bad network.
PUBLISH_TIMEOUT_SECONDS="${PUBLISH_TIMEOUT_SECONDS:-1200}"
cd "$ROOT"

say() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# --- preflight ----------------------------------------------------------------------------------
command -v az >/dev/null || fail "the Azure CLI (az) is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli"
command -v pulumi >/dev/null || fail "pulumi is not installed: https://www.pulumi.com/docs/install/"
[ -x "$PYTHON" ] || fail "no virtualenv at .venv: run 'make setup' first"
SUBSCRIPTION="$(az account show --query id -o tsv 2>/dev/null)" || fail "not logged in to Azure: run 'az login' (and 'az account set -s <subscription>')"
pulumi whoami >/dev/null 2>&1 || fail "not logged in to Pulumi: run 'pulumi login' (or 'pulumi login --local' for a local state file)"
say "subscription $(az account show --query name -o tsv) ($SUBSCRIPTION), stack '$STACK'"

# Resource providers a fresh subscription may not have registered yet (Event Grid most often).
for namespace in Microsoft.Web Microsoft.Storage Microsoft.CognitiveServices Microsoft.EventGrid \
  Microsoft.OperationalInsights Microsoft.Insights Microsoft.ManagedIdentity; do
  state="$(az provider show --namespace "$namespace" --query registrationState -o tsv 2>/dev/null || echo NotRegistered)"
  if [ "$state" != "Registered" ]; then
    say "registering resource provider $namespace (one time, takes a minute)"
    az provider register --namespace "$namespace" --wait
  fi
done

# --- stack --------------------------------------------------------------------------------------
if [ ! -f "Pulumi.$STACK.yaml" ]; then
  cp Pulumi.dev.yaml.example "Pulumi.$STACK.yaml"
  say "created Pulumi.$STACK.yaml from Pulumi.dev.yaml.example (the defaults; edit it and rerun to change them)"
fi
pulumi stack select --create "$STACK" >/dev/null

subscriptions_enabled="$(pulumi config get visiontune:eventGridSubscriptions --stack "$STACK" 2>/dev/null || echo false)"

# --- phase 1 ------------------------------------------------------------------------------------
if [ "$subscriptions_enabled" = "true" ]; then
  say "phase 1: pulumi up (update; Event Grid subscriptions already enabled)"
else
  say "phase 1: pulumi up (storage, Azure OpenAI, monitoring, function app, roles; no Event Grid subscriptions yet)"
  pulumi config set visiontune:eventGridSubscriptions false --stack "$STACK"
fi
pulumi up --yes --stack "$STACK" || fail "phase 1 failed: see the Pulumi error above (quota, region or name conflicts are the usual causes)"

RESOURCE_GROUP="$(pulumi stack output resourceGroup --stack "$STACK")"
APP="$(pulumi stack output functionAppName --stack "$STACK")"
APP_URL="$(pulumi stack output functionAppUrl --stack "$STACK")"

# --- publish ------------------------------------------------------------------------------------
say "building the app package"
"$PYTHON" -m infra.package --out "$PACKAGE"

say "publishing to $APP with a remote build (pip install -r requirements.txt on Azure; a few minutes)"
# The first publish right after phase 1 can fail while the new role assignments (deployment storage)
# propagate: retry a few times.
command -v timeout >/dev/null || fail "'timeout' (GNU coreutils) is needed to bound the publish step"
attempt=1
until timeout --kill-after=30 "$PUBLISH_TIMEOUT_SECONDS" az functionapp deployment source config-zip \
  --resource-group "$RESOURCE_GROUP" --name "$APP" --src "$PACKAGE" --build-remote true \
  --timeout "$PUBLISH_TIMEOUT_SECONDS" >/dev/null; do
  status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    # Not retried: the remote build may still be running, and a second upload would race it.
    fail "publishing did not finish within ${PUBLISH_TIMEOUT_SECONDS}s and was stopped. The remote build may still be running: check 'az functionapp log deployment show -g $RESOURCE_GROUP -n $APP', then run 'make deploy STACK=$STACK' again (PUBLISH_TIMEOUT_SECONDS=<seconds> allows longer)"
  fi
  [ "$attempt" -ge "$PUBLISH_ATTEMPTS" ] && fail "publishing failed $attempt times: check 'az functionapp log deployment show -g $RESOURCE_GROUP -n $APP'"
  echo "    publish attempt $attempt failed; retrying in ${PUBLISH_RETRY_SECONDS}s (new role assignments take minutes to apply)"
  attempt=$((attempt + 1))
  sleep "$PUBLISH_RETRY_SECONDS"
done

# --- phase 2 ------------------------------------------------------------------------------------
say "waiting for the blob extension's system key (created when the host first starts the blob triggers)"
deadline=$(( $(date +%s) + KEY_WAIT_SECONDS ))
until key="$(az functionapp keys list --resource-group "$RESOURCE_GROUP" --name "$APP" --query "systemKeys.blobs_extension" -o tsv 2>/dev/null)" && [ -n "$key" ]; do
  [ "$(date +%s)" -ge "$deadline" ] && fail "no blobs_extension key after ${KEY_WAIT_SECONDS}s: is the app running? Check its logs in Application Insights, then rerun"
  curl -fsS -o /dev/null --max-time 30 "$APP_URL" || true   # wake the host
  sleep "$KEY_POLL_SECONDS"
done
unset key

say "phase 2: pulumi up with the Event Grid subscriptions for the blob triggers"
pulumi config set visiontune:eventGridSubscriptions true --stack "$STACK"
pulumi up --yes --stack "$STACK" || fail "phase 2 failed: Event Grid could not validate the webhook; rerun once the app is up"

say "done"
pulumi stack output --stack "$STACK"
cat <<EOF

Push a dataset (folder of <label>/<image> files, then the _READY marker):
  $(pulumi stack output uploadCommand --stack "$STACK")
Follow it: curl "$APP_URL/api/status?code=\$(az functionapp function keys list -g $RESOURCE_GROUP -n $APP --function-name status --query default -o tsv)"
EOF
