#!/usr/bin/env bash
# Build the rendermesh .deb from a built binary: the binary, the systemd unit, the service
# user (sysusers) and directories (tmpfiles), the default config (a conffile), a man page made
# from the CLI's own help, and the docs. Dependencies are the shared libraries the binary links
# (Debian's FFmpeg libraries), found by dpkg-shlibdeps; nothing is downloaded at install time.
#   bash packaging/deb/build.sh [BIN [OUT_DIR]]
#       BIN      default target/release/rendermesh (built when missing)
#       OUT_DIR  default target/deb
#   ARCH=arm64 for a binary cross-built for arm64 (default: this box's architecture); without
#       BIN on another architecture, the arm64 package is cross-built, checked under qemu and
#       written by packaging/deb/cross-arm64.sh;
#   RUN=qemu-aarch64-static (say) to run a foreign BIN for its help text, STRIP=its strip;
#   DEB_COMPRESS=none|xz (default xz).
# Prints the path of the package it wrote.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BIN=${1:-$REPO/target/release/rendermesh}
OUT=${2:-$REPO/target/deb}
ARCH=${ARCH:-$(dpkg --print-architecture)}
if [[ $ARCH == arm64 && $# -eq 0 && $(dpkg --print-architecture) != arm64 ]]; then
    exec bash packaging/deb/cross-arm64.sh "$OUT"
fi
RUN=${RUN:-}
if [[ ! -x $BIN ]]; then
    [[ $BIN == "$REPO/target/release/rendermesh" ]] || { echo "deb: $BIN not found" >&2; exit 1; }
    cargo build --release -q -p rendermesh-node
fi
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
D=$ROOT/DEBIAN
mkdir -p "$D" "$ROOT"/usr/bin "$ROOT"/usr/lib/systemd/system "$ROOT"/usr/lib/sysusers.d \
    "$ROOT"/usr/lib/tmpfiles.d "$ROOT"/etc/rendermesh "$ROOT"/usr/share/doc/rendermesh \
    "$ROOT"/usr/share/man/man1

install -m 0755 "$BIN" "$ROOT/usr/bin/rendermesh"
"${STRIP:-strip}" --strip-debug "$ROOT/usr/bin/rendermesh" 2>/dev/null || true
# the unit as systemd/install.sh installs it, with the package's paths
sed -e 's|/usr/local/bin/rendermesh|/usr/bin/rendermesh|' \
    -e 's|/usr/local/share/doc/rendermesh|/usr/share/doc/rendermesh|' \
    -e 's|Install with systemd/install.sh.|Installed by the rendermesh package.|' \
    systemd/rendermesh.service > "$ROOT/usr/lib/systemd/system/rendermesh.service"
install -m 0644 systemd/rendermesh.sysusers "$ROOT/usr/lib/sysusers.d/rendermesh.conf"
install -m 0644 systemd/rendermesh.tmpfiles "$ROOT/usr/lib/tmpfiles.d/rendermesh.conf"
install -m 0640 configs/single-box.toml "$ROOT/etc/rendermesh/node.toml"
install -m 0644 docs/*.md README.md "$ROOT/usr/share/doc/rendermesh/"
install -m 0644 configs/*.toml "$ROOT/usr/share/doc/rendermesh/"
cat > "$ROOT/usr/share/doc/rendermesh/copyright" <<TXT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rendermesh

Files: *
License: $(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)
TXT

# the man page: the CLI's help, every command's in a section of its own
man_escape() { sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/'; }
{
    echo ".TH RENDERMESH 1 \"\" \"rendermesh $VERSION\" \"User Commands\""
    echo ".SH NAME"
    echo "rendermesh \\- peer-to-peer render mesh for video"
    echo ".SH SYNOPSIS"
    echo ".B rendermesh"
    echo "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR"
    echo ".SH DESCRIPTION"
    echo ".nf"
    $RUN "$BIN" --help | man_escape
    echo ".fi"
    echo ".SH COMMANDS"
    for cmd in $($RUN "$BIN" --help | awk '/^Commands:/ {on=1; next} /^$/ {on=0} on {print $1}'); do
        [[ $cmd == help ]] && continue
        echo ".SS \"rendermesh $cmd\""
        echo ".nf"
        $RUN "$BIN" "$cmd" --help | man_escape
        echo ".fi"
    done
    echo ".SH FILES"
    echo "/etc/rendermesh/node.toml, /var/lib/rendermesh, /usr/share/doc/rendermesh/operations.md"
} | gzip -9n > "$ROOT/usr/share/man/man1/rendermesh.1.gz"

# dependencies: the packages of the libraries the binary links
mkdir -p "$STAGE/src/debian"
printf 'Source: rendermesh\n\nPackage: rendermesh\nArchitecture: any\n' > "$STAGE/src/debian/control"
DEPENDS=$(cd "$STAGE/src" && dpkg-shlibdeps -O -e"$ROOT/usr/bin/rendermesh" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[[ -n $DEPENDS ]] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

echo /etc/rendermesh/node.toml > "$D/conffiles"
cat > "$D/control" <<CTL
Package: rendermesh
Version: $VERSION
Architecture: $ARCH
Maintainer: rendermesh developers <rendermesh@localhost>
Installed-Size: $(du -sk "$ROOT" | cut -f1)
Depends: $DEPENDS, systemd
Section: video
Priority: optional
Description: peer-to-peer render mesh for video
 Every box runs the same rendermesh binary as a systemd service; together they
 transcode, analyse and cut video as one render farm, without a central server.
 A box alone is a mesh of one.
CTL
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$D/"
mkdir -p "$OUT"
deb=$OUT/rendermesh_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$ROOT" "$deb" >/dev/null
echo "$deb"
