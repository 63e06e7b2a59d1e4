#!/usr/bin/env bash
# Builds relais's Debian package and checks it; any missing piece fails loudly.
#
#   deploy/check-deb.sh                  `cargo deb --no-strip`: the release build users
#                                        install (target/debian/relais_VERSION-1_ARCH.deb)
#   deploy/check-deb.sh --binary PATH    packages PATH (any build of relais, e.g. the
#                                        target/debug/relais CI already built) with the same
#                                        metadata, unit, user, conffile and docs (`cargo deb
#                                        --no-build --fast`); CI uses this (.ci/run)
#   deploy/check-deb.sh --deb FILE       checks a package built before
#
# What it checks:
#   1. control: package name, version (Cargo.toml's, revision 1), architecture, Depends
#      (libc6, a systemd-sysusers provider), /etc/relais/relais.toml a conffile;
#   2. contents (dpkg-deb --contents): /usr/bin/relais 0755, the unit, the sysusers file,
#      the sample config, the docs; nothing under /usr/local; the binary carries no
#      debug info (Cargo.toml [profile.release]; --binary: objcopy) but keeps its symbol
#      table, so a panic's backtrace names the functions (`cargo deb` without --no-strip
#      runs strip --strip-unneeded: 11 MB less, and backtraces without a single name);
#   3. an install into a scratch root (dpkg --root, maintainer scripts run with DPKG_ROOT,
#      not in the host): the system user `relais` exists (home /var/lib/relais, no login
#      shell), the unit is not enabled, `relais --version` runs and `relais check` accepts
#      the sample config, an edited conffile survives a reinstall, purge removes it all;
#   4. `systemd-analyze verify` on the installed unit (its ExecStart pointed at the
#      scratch root's binary): any message about relais fails;
#   5. lintian: any error or warning fails (deploy/lintian-overrides says what is overridden).
# Needs cargo-deb (`cargo install cargo-deb --locked`), dpkg, root (or sudo) for the scratch
# install, systemd-sysusers (the postinst calls it), systemd-analyze and lintian. Without the
# last two it says SKIPPED, unless RELAIS_REQUIRE_DEB_TOOLS=1 (set by .ci/run): then it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "check-deb: ok: $*"; }
skipped() {
  [ "${RELAIS_REQUIRE_DEB_TOOLS:-}" = 1 ] && fail "$1 is missing (RELAIS_REQUIRE_DEB_TOOLS=1)"
  echo "check-deb: SKIPPED: $1 is not installed (apt-get install $2)" >&2
}

mode=release binary="" deb=""
case "${1:-}" in
  "") ;;
  --binary) mode=binary binary="${2:?--binary PATH}" ;;
  --deb) mode=deb deb="${2:?--deb FILE}" ;;
  *) fail "usage: deploy/check-deb.sh [--binary PATH | --deb FILE]" ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  sudo -n true 2>/dev/null || fail "the scratch install needs root or passwordless sudo"
  SUDO="sudo"
fi
work=$(mktemp -d)
trap '$SUDO rm -rf "$work"' EXIT
pkgid=$(cargo pkgid)
version="${pkgid##*[@#]}-1"
arch=$(dpkg --print-architecture)

# --- build ----------------------------------------------------------------------------
if [ "$mode" != deb ]; then
  cargo deb --version >/dev/null 2>&1 || fail "cargo-deb is missing: cargo install cargo-deb --locked"
fi
if [ "$mode" = release ]; then
  deb=$(cargo deb --no-strip | tail -n 1)
elif [ "$mode" = binary ]; then
  [ -x "$binary" ] || fail "$binary is not an executable"
  # cargo-deb takes the binary from <target dir>/release/relais: a scratch target dir
  # holding this binary there, so nothing else is rebuilt or overwritten. Its debug info
  # goes, its symbol table stays: the form of the release binary.
  mkdir -p "$work/target/release"
  objcopy --strip-debug "$binary" "$work/target/release/relais"
  deb=$(CARGO_TARGET_DIR="$work/target" cargo deb --no-build --no-strip --fast -o "$work/" | tail -n 1)
fi
[ -f "$deb" ] || fail "no package at '$deb'"
echo "check-deb: $deb ($(du -h "$deb" | cut -f1))"

# --- 1. control -----------------------------------------------------------------------
field() { dpkg-deb --field "$deb" "$1"; }
[ "$(field Package)" = relais ] || fail "Package is '$(field Package)', not relais"
[ "$(field Version)" = "$version" ] || fail "Version is '$(field Version)', Cargo.toml says $version"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)', not $arch"
depends=$(field Depends)
case "$depends" in *libc6*systemd-sysusers*) ;; *) fail "Depends lacks libc6 or systemd-sysusers: $depends" ;; esac
dpkg-deb --control "$deb" "$work/control"
grep -qx /etc/relais/relais.toml "$work/control/conffiles" || fail "/etc/relais/relais.toml is not a conffile"
grep -q 'systemd-sysusers.*relais.conf' "$work/control/postinst" || fail "postinst does not run systemd-sysusers relais.conf"
! grep -q 'deb-systemd-invoke start' "$work/control/postinst" || fail "postinst starts the service (it must not: the sample config is not the user's)"
ok "control: relais $version $arch; Depends: $depends; conffile /etc/relais/relais.toml; postinst creates the user"

# --- 2. contents ----------------------------------------------------------------------
dpkg-deb --contents "$deb" > "$work/contents"
need() { grep -qE "^$1 +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" "$work/contents" || fail "missing or wrong mode: $1 /$2"; }
exe='-rwxr-xr-x (root/root|0/0)' file='-rw-r--r-- (root/root|0/0)'
need "$exe" usr/bin/relais
need "$file" usr/lib/systemd/system/relais.service
need "$file" usr/lib/sysusers.d/relais.conf
need "$file" etc/relais/relais.toml
for doc in copyright changelog.Debian.gz README.md deploy.md configuration.md; do
  need "$file" "usr/share/doc/relais/$doc"
done
! grep -q '\./usr/local/' "$work/contents" || fail "files under /usr/local"
ok "contents: $(grep -c '^-' "$work/contents") files, binary, unit, sysusers, conffile and docs in place"

dpkg-deb --extract "$deb" "$work/x"
sections=$(readelf -S -W "$work/x/usr/bin/relais")
! grep -q '\.debug_info' <<< "$sections" || fail "the packaged binary carries debug info ([profile.release] debug must stay off)"
grep -q '\.symtab' <<< "$sections" || fail "the packaged binary has no symbol table: backtraces would name no function (cargo deb --no-strip)"
ok "binary: no debug info, symbol table kept, $(stat -c %s "$work/x/usr/bin/relais") bytes"

# --- 3. install into a scratch root ---------------------------------------------------
command -v systemd-sysusers >/dev/null || fail "systemd-sysusers is missing (apt-get install systemd): the postinst needs it"
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
touch "$root/var/lib/dpkg/status"
# --force-script-chrootless: maintainer scripts run here with DPKG_ROOT=$root (systemd-sysusers
# --root, deb-systemd-helper honour it); --force-depends: the scratch root has no libc6 package.
dpkg_root() { $SUDO dpkg --root="$root" --log="$root/dpkg.log" --force-script-chrootless --force-depends "$@" > "$work/dpkg.out" 2>&1 \
  || { cat "$work/dpkg.out" >&2; fail "dpkg $*"; }; }
dpkg_root --install "$deb"
user=$(grep '^relais:' "$root/etc/passwd") || fail "no user relais in the scratch root's /etc/passwd"
IFS=: read -r _ _ uid _ _ home shell <<< "$user"
[ "$uid" -lt 1000 ] || fail "relais is not a system user: uid $uid"
[ "$home" = /var/lib/relais ] || fail "relais's home is $home, not /var/lib/relais"
case "$shell" in */nologin|/bin/false) ;; *) fail "relais has a login shell: $shell" ;; esac
grep -q '^relais:' "$root/etc/group" || fail "no group relais"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/relais.service" ] || fail "the package enabled relais.service"
got=$("$root/usr/bin/relais" --version) || fail "relais --version failed"
[ "$got" = "relais ${version%-1}" ] || fail "relais --version says '$got', not relais ${version%-1}"
"$root/usr/bin/relais" check --config "$root/etc/relais/relais.toml" > "$work/check.out" 2>&1 \
  || { cat "$work/check.out" >&2; fail "relais check rejects the sample /etc/relais/relais.toml"; }
ok "installed in a scratch root: user relais (uid $uid, $home, $shell), unit not enabled, '$got', sample config passes relais check"

# --- 4. the unit ----------------------------------------------------------------------
unit="$root/usr/lib/systemd/system/relais.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ "${exec_start%% *}" = /usr/bin/relais ] || fail "ExecStart runs ${exec_start%% *}, the package installs /usr/bin/relais"
config=$(sed -n 's/.* --config \([^ ]*\).*/\1/p' <<< "$exec_start")
[ -f "$root$config" ] || fail "ExecStart's --config $config is not in the package"
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/verify"
  sed "s|^ExecStart=/usr/bin/relais |ExecStart=$root/usr/bin/relais |" "$unit" > "$work/verify/relais.service"
  systemd-analyze verify "$work/verify/relais.service" > "$work/verify.out" 2>&1 || { cat "$work/verify.out" >&2; fail "systemd-analyze verify"; }
  ! grep -i relais "$work/verify.out" >&2 || fail "systemd-analyze verify complains about relais.service"
  ok "systemd-analyze verify relais.service ($(systemd-analyze --version | head -n 1))"
else
  skipped systemd-analyze systemd
fi

# --- 3b. upgrade keeps an edited conffile; purge removes everything ---------------------
echo '# edited by check-deb.sh' | $SUDO tee -a "$root/etc/relais/relais.toml" >/dev/null
dpkg_root --install "$deb"
tail -n 1 "$root/etc/relais/relais.toml" | grep -q 'edited by check-deb' || fail "reinstalling overwrote the edited /etc/relais/relais.toml"
dpkg_root --purge relais
for f in usr/bin/relais etc/relais/relais.toml usr/lib/systemd/system/relais.service usr/lib/sysusers.d/relais.conf; do
  [ ! -e "$root/$f" ] || fail "purge left /$f"
done
ok "reinstall kept the edited conffile; purge removed binary, unit, sysusers file and conffile"

# --- 5. lintian -----------------------------------------------------------------------
if command -v lintian >/dev/null; then
  lint_rc=0
  lintian --fail-on error,warning "$deb" > "$work/lintian.out" 2>&1 || lint_rc=$?
  grep -v 'running with root privileges' "$work/lintian.out" >&2 || true
  [ "$lint_rc" -eq 0 ] || fail "lintian (exit $lint_rc)"
  ok "lintian: no error, no warning ($(lintian --version))"
else
  skipped lintian lintian
fi
echo "check-deb: all checks passed: $deb"
