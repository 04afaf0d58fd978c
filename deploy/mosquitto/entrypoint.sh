#!/bin/sh
# Entrypoint of the compose mosquitto: generate the password file from the environment, then run the
# broker as its own user.
set -eu
mkdir -p /mosquitto/run
sh /mosquitto/config/make-passwd.sh /mosquitto/run/passwd
chown -R mosquitto:mosquitto /mosquitto/run /mosquitto/data 2>/dev/null || true
chmod 0700 /mosquitto/run
exec mosquitto -c /mosquitto/config/mosquitto.conf
