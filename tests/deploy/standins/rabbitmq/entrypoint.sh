#!/bin/sh
# The official image's contract: RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS (default guest)
# become the default user, created when the node first starts on empty data.
set -eu
cat >/etc/rabbitmq/conf.d/10-defaults.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users = none
listeners.tcp.default = 5672
management.tcp.port = 15672
CONF
exec "$@"
