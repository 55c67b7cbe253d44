#!/usr/bin/env bash
# Builds the Debian package and checks it on this machine (CI runs as root):
# installs it with dpkg -i, runs `tcbackup --version`, renders the installed
# man page with `man -l`, parses the completion scripts with bash/zsh/fish
# -n, runs lintian (errors fail; warnings are shown), then removes and purges
# it and shows that /var/lib/tcbackup (the backups) survived. Installs
# cargo-deb, man-db, zsh, fish and lintian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n--> %s\n' "$*"; }
fail() { echo "check-deb: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  fail "needs root (dpkg -i); CI runs as root"
fi
if dpkg-query -W -f='${Status}' tcbackup 2>/dev/null | grep -q installed; then
  fail "a tcbackup package is already installed here; this check installs and purges its own"
fi

need_apt=()
command -v man >/dev/null 2>&1 || need_apt+=(man-db)
command -v zsh >/dev/null 2>&1 || need_apt+=(zsh)
command -v fish >/dev/null 2>&1 || need_apt+=(fish)
command -v lintian >/dev/null 2>&1 || need_apt+=(lintian)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_apt+=(dpkg-dev)
command -v adduser >/dev/null 2>&1 || need_apt+=(adduser)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! command -v cargo-deb >/dev/null 2>&1; then
  step "cargo install cargo-deb --locked"
  cargo install cargo-deb --locked --quiet
fi

# A /var/lib/tcbackup from before (a hand install) is left exactly as it was.
data_existed=no
[ -e /var/lib/tcbackup ] && data_existed=yes

step "build the package"
deb=$(scripts/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "no package at '$deb'"
echo "$deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

step "lintian (errors fail, warnings shown)"
# Every instance of a tag is shown; only errors fail. Overrides, each with
# its reason, are in debian/tcbackup.lintian-overrides.
lintian --fail-on error --tag-display-limit 0 --show-overrides "$deb"

step "dpkg -i"
dpkg -i "$deb"
trap 'dpkg --purge tcbackup >/dev/null 2>&1 || true' EXIT

step "installed: binary, user, data directory, config, docs"
tcbackup --version
getent passwd tcbackup
stat -c '%a %U:%G %n' /var/lib/tcbackup /etc/tcbackup/tcbackup.toml
if [ "$data_existed" = no ]; then
  [ "$(stat -c %a /var/lib/tcbackup)" = 700 ] || fail "/var/lib/tcbackup is not 0700"
  [ "$(stat -c %U:%G /var/lib/tcbackup)" = tcbackup:tcbackup ] || fail "/var/lib/tcbackup is not tcbackup's"
fi
[ "$(stat -c '%a %U:%G' /etc/tcbackup/tcbackup.toml)" = "640 root:tcbackup" ] \
  || fail "/etc/tcbackup/tcbackup.toml is not 0640 root:tcbackup"
grep -qx /etc/tcbackup/tcbackup.toml /var/lib/dpkg/info/tcbackup.conffiles \
  || fail "the config is not a conffile"
for unit in tcbackup.service tcbackup-now.service tcbackup-now.timer; do
  f=/usr/lib/systemd/system/$unit
  [ -f "$f" ] || fail "$f missing"
  grep -q '^ExecStart=/usr/bin/tcbackup ' "$f" 2>/dev/null || [ "$unit" = tcbackup-now.timer ] \
    || fail "$f does not run /usr/bin/tcbackup"
done
if [ -d /run/systemd/system ]; then
  for unit in tcbackup.service tcbackup-now.timer; do
    if systemctl is-active --quiet "$unit"; then fail "$unit was started by the install"; fi
    if systemctl is-enabled --quiet "$unit"; then fail "$unit was enabled by the install"; fi
  done
fi
man -l /usr/share/man/man1/tcbackup.1.gz | head -n 12
man -l /usr/share/man/man1/tcbackup-status.1.gz >/dev/null
bash -n /usr/share/bash-completion/completions/tcbackup
zsh -n /usr/share/zsh/vendor-completions/_tcbackup
fish -n /usr/share/fish/vendor_completions.d/tcbackup.fish
echo "completions parse in bash, zsh and fish"

step "a backup in /var/lib/tcbackup, then dpkg --remove"
install -d -m 0700 -o tcbackup -g tcbackup /var/lib/tcbackup/crs-check-deb
echo "not a real backup" > /var/lib/tcbackup/crs-check-deb/marker
dpkg --remove tcbackup
[ ! -e /usr/bin/tcbackup ] || fail "/usr/bin/tcbackup is still there after remove"
[ -f /etc/tcbackup/tcbackup.toml ] || fail "remove deleted the conffile"
[ -f /var/lib/tcbackup/crs-check-deb/marker ] || fail "remove deleted data"

step "dpkg --purge"
dpkg --purge tcbackup
trap - EXIT
[ ! -e /etc/tcbackup/tcbackup.toml ] || fail "purge left the conffile"
[ -f /var/lib/tcbackup/crs-check-deb/marker ] || fail "purge deleted data"
ls -la /var/lib/tcbackup /var/lib/tcbackup/crs-check-deb
echo "/var/lib/tcbackup survived remove and purge"
# Leave the machine as it was found: the marker is ours.
rm -rf /var/lib/tcbackup/crs-check-deb
if [ "$data_existed" = no ]; then rmdir /var/lib/tcbackup; fi

step "package checks green"
