#!/usr/bin/env bash
# Installs popbridge for the current user: the binary (cargo install), a config (popbridge init,
# if there is none yet), and the systemd user unit, enabled and started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

echo "Building and installing the binary (cargo install --path .) …"
cargo install --locked --path "$root"
bin="$HOME/.cargo/bin/popbridge"

config=${POPBRIDGE_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/popbridge/config.toml}
if [ ! -f "$config" ]; then
  echo "No config yet: running popbridge init …"
  "$bin" init
else
  echo "Keeping the existing config $config."
fi

unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
mkdir -p "$unit_dir"
install -m 644 "$root/scripts/popbridge.service" "$unit_dir/popbridge.service"
if command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user daemon-reload
  systemctl --user enable --now popbridge.service
  echo "popbridge is running: systemctl --user status popbridge"
else
  echo "Installed $unit_dir/popbridge.service, but no systemd user manager answers here."
  echo "Start it with: systemctl --user enable --now popbridge   (or run: $bin run)"
fi
echo
"$bin" client-config
echo
echo "Next: popbridge account add"
