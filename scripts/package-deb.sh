#!/usr/bin/env bash
# Builds the .deb packages of both binaries with cargo-deb (release build) and,
# with --install (root on Debian), installs them, runs the installed binaries
# from their installed paths (--version, check-config on the shipped conffile
# with the secrets it names supplied the way the unit supplies them), checks
# the units, conffiles and JSON Schemas landed, then purges both packages again.
#
#   scripts/package-deb.sh              build target/debian/*.deb
#   scripts/package-deb.sh --install    build, install, check, purge
#   scripts/package-deb.sh --install --profile dev
#                                       the same from the debug build `cargo
#                                       test` already made (CI: the package
#                                       layout, units, conffiles and installed
#                                       paths are what is checked, and a
#                                       second, release build of both binaries
#                                       cost CI ~7 minutes). Not for shipping:
#                                       cargo-deb (pinned below) warns that a
#                                       dev profile is for testing only.
set -euo pipefail
cd "$(dirname "$0")/.."
install=0
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install=1 ;;
    --profile) profile="${2:?--profile needs a cargo profile name}"; shift ;;
    *) echo "package-deb.sh: unknown argument '$1' (--install, --profile NAME)" >&2; exit 64 ;;
  esac
  shift
done

# cargo-deb from crates.io, pinned: the version whose metadata format
# probe/Cargo.toml and controller/Cargo.toml are written for.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet
fi

cargo build --profile "$profile" --locked -q -p outpost-probe -p outpost-controller --bins
rm -rf target/debian
# cargo-deb maps the assets' `target/release/` to the profile's directory.
for pkg in outpost-probe outpost-controller; do
  cargo deb -p "$pkg" --profile "$profile" --no-build --locked -o target/debian/
done
ls -l target/debian/*.deb
[ "$install" = 1 ] || exit 0

fail() { echo "package check failed: $*" >&2; exit 1; }
command -v dpkg >/dev/null || fail "dpkg not found"
[ "$(id -u)" = 0 ] || fail "--install needs root"

work=$(mktemp -d)
cleanup() {
  dpkg --purge outpost-probe outpost-controller >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

dpkg -i target/debian/outpost-probe_*.deb target/debian/outpost-controller_*.deb

for pkg in outpost-probe outpost-controller; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg")" = "install ok installed" ] || fail "$pkg not installed"
  out=$("/usr/bin/$pkg" --version)
  echo "$out"
  case "$out" in "$pkg "*) ;; *) fail "$pkg --version printed '$out'";; esac
  [ -f "/lib/systemd/system/$pkg.service" ] || fail "$pkg.service not installed"
  grep -q "^/etc/outpost/${pkg#outpost-}.toml$" "/var/lib/dpkg/info/$pkg.conffiles" \
    || fail "/etc/outpost/${pkg#outpost-}.toml is not a conffile of $pkg"
  [ -f "/usr/share/doc/$pkg/README.Debian" ] || fail "$pkg README.Debian missing"
  # The schema shipped is the one the installed binary describes.
  schema="/usr/share/outpost/schema/${pkg#outpost-}.schema.json"
  [ -f "$schema" ] || fail "$schema not installed by $pkg"
  "/usr/bin/$pkg" schema | cmp -s - "$schema" || fail "$schema differs from '$pkg schema'"
done
# Installed disabled: both need secrets first.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  ! systemctl is-enabled --quiet outpost-probe || fail "outpost-probe enabled on install"
fi

# The probe's shipped config reads its token as a systemd credential.
mkdir -m 0700 "$work/cred"
head -c 48 /dev/urandom | base64 | tr -d '/+=' | head -c 40 >"$work/cred/probe.token"
CREDENTIALS_DIRECTORY="$work/cred" /usr/bin/outpost-probe check-config /etc/outpost/probe.toml

# The controller's shipped config: the certificate as the unit's credentials,
# every { env = … } secret from the environment (as controller.env would).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=controller.example.net -keyout "$work/controller.key" -out "$work/controller.pem" 2>/dev/null
conf="$work/controller.toml"
sed "s#/run/credentials/outpost-controller.service/#$work/#g" /etc/outpost/controller.toml >"$conf"
envs=()
# (only keys the config uses: commented examples would be unknown OUTPOST_* variables, exit 78)
for name in $(grep -v '^[[:space:]]*#' "$conf" | grep -o 'env = "[A-Z0-9_]*"' | sed 's/env = "\(.*\)"/\1/' | sort -u); do
  value=$(head -c 48 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
  case "$name" in *_URL) value="https://hooks.example.net/services/$value" ;; esac
  envs+=("$name=$value")
done
env "${envs[@]}" /usr/bin/outpost-controller check-config "$conf"

dpkg -r outpost-probe outpost-controller >/dev/null
[ ! -e /usr/bin/outpost-probe ] || fail "outpost-probe binary left after removal"
[ -f /etc/outpost/probe.toml ] || fail "remove (not purge) deleted the conffile"
echo "packages: built, installed, checked, removed"
