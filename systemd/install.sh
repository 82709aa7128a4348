#!/usr/bin/env bash
# Install a built rendermesh on this box as a systemd service.
#   sudo systemd/install.sh [path/to/rendermesh]   (default: target/release/rendermesh)
# Idempotent: run it again after an upgrade. The node starts a mesh of one with a fresh key;
# copy /etc/rendermesh/swarm.key from your first box to the others (docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/rendermesh}
[ -x "$BIN" ] || { echo "install: $BIN not found; build it first (cargo build --release -p rendermesh-node)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "install: run as root" >&2; exit 1; }

install -m 0755 "$BIN" /usr/local/bin/rendermesh
install -m 0644 systemd/rendermesh.sysusers /usr/lib/sysusers.d/rendermesh.conf
install -m 0644 systemd/rendermesh.tmpfiles /usr/lib/tmpfiles.d/rendermesh.conf
systemd-sysusers /usr/lib/sysusers.d/rendermesh.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/rendermesh.conf
if [ ! -f /etc/rendermesh/node.toml ]; then
    install -m 0640 -g rendermesh configs/single-box.toml /etc/rendermesh/node.toml
fi
install -d /usr/local/share/doc/rendermesh
install -m 0644 docs/*.md /usr/local/share/doc/rendermesh/
install -m 0644 systemd/rendermesh.service /etc/systemd/system/rendermesh.service
systemd-analyze verify /etc/systemd/system/rendermesh.service
systemctl daemon-reload
systemctl enable --now rendermesh.service
echo "install: rendermesh is running; 'systemctl status rendermesh', 'rendermesh --data-dir /var/lib/rendermesh status'" >&2
