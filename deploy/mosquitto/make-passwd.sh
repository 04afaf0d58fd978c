#!/bin/sh
# Write a mosquitto password file for the opsdash users from environment variables.
#
#   make-passwd.sh OUTPUT
#
# One user per variable that is set and not empty:
#   MQTT_PASSWORD_AGGREGATOR -> opsdash-aggregator     MQTT_PASSWORD_INGEST     -> ingest
#   MQTT_PASSWORD_PROBES     -> opsdash-probes         MQTT_PASSWORD_EVALUATOR  -> evaluator
#   MQTT_PASSWORD_GATEWAY    -> opsdash-gateway        MQTT_PASSWORD_DISPATCHER -> dispatcher
#   MQTT_PASSWORD_ADMIN      -> opsdash-admin          MQTT_PASSWORD_DELIVERY   -> delivery
#   MQTT_PASSWORD_NOTIFIER   -> opsdash-notifier
#   MQTT_PASSWORD_RECORDER   -> opsdash-recorder
# plus MQTT_EXTRA_USERS="name:password name2:password2" for further platform services (each user may
# write only $ops/v1/svc/<its name>/..., see the ACL file).
# Used by the mosquitto container at start (entrypoint.sh) and by the ACL test.
set -eu
out=${1:?usage: make-passwd.sh OUTPUT}
tmp="$out.tmp.$$"
umask 077
: > "$tmp"
add() {
  [ -n "$2" ] || return 0
  mosquitto_passwd -b "$tmp" "$1" "$2"
}
add opsdash-aggregator "${MQTT_PASSWORD_AGGREGATOR:-}"
add opsdash-probes "${MQTT_PASSWORD_PROBES:-}"
add opsdash-gateway "${MQTT_PASSWORD_GATEWAY:-}"
add opsdash-recorder "${MQTT_PASSWORD_RECORDER:-}"
add opsdash-admin "${MQTT_PASSWORD_ADMIN:-}"
add opsdash-notifier "${MQTT_PASSWORD_NOTIFIER:-}"
add ingest "${MQTT_PASSWORD_INGEST:-}"
add evaluator "${MQTT_PASSWORD_EVALUATOR:-}"
add dispatcher "${MQTT_PASSWORD_DISPATCHER:-}"
add delivery "${MQTT_PASSWORD_DELIVERY:-}"
for pair in ${MQTT_EXTRA_USERS:-}; do
  add "${pair%%:*}" "${pair#*:}"
done
if [ ! -s "$tmp" ]; then
  echo "make-passwd.sh: no MQTT_PASSWORD_* variable is set; refusing to write an empty password file" >&2
  rm -f "$tmp"; exit 1
fi
mv "$tmp" "$out"
