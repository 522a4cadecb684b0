#!/usr/bin/env bash
# Runs inside the LocalStack container once it is ready: the bucket `sam deploy` uploads the
# functions' code to (localstack/deploy.sh makes it too, when LocalStack was started otherwise).
set -euo pipefail
bucket=${TARRY_SAM_BUCKET:-tarry-sam-artifacts}
awslocal s3api head-bucket --bucket "$bucket" 2>/dev/null || awslocal s3 mb "s3://$bucket"
