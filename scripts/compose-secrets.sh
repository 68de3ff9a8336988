#!/usr/bin/env bash
# Write the secrets compose.yaml reads (Docker secrets) into ./secrets/, once.
#
#   bash scripts/compose-secrets.sh [FOLDER]
#
# Each file holds one random value. Existing files are kept (PostgreSQL keeps the password it
# was first started with: change it there before replacing its file). The folder is readable by
# its owner only; the files inside are world-readable so that the containers' unprivileged users
# can read their bind-mounted copies. Never commit the folder (it is in .gitignore).
set -euo pipefail
folder=${1:-"$(dirname "$0")/../secrets"}
mkdir -p "$folder"
chmod 700 "$folder"
for name in postgres_password mlflow_admin_password mlflow_flask_secret_key dashboard_password; do
    file="$folder/$name"
    if [ -s "$file" ]; then
        echo "$file exists: kept"
        continue
    fi
    python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$file"
    chmod 644 "$file"
    echo "$file written"
done
echo "The MLflow admin (user admin) signs in with the password in $folder/mlflow_admin_password."
