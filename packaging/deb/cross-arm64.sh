#!/usr/bin/env bash
# Cross-build rendermesh for arm64 on an amd64 box, check the arm64 binary under
# qemu-user-static against this box's own build, and package it.
#   bash packaging/deb/cross-arm64.sh [OUT_DIR]      (as root, or with sudo; OUT_DIR default target/deb)
#
# The build runs in a Debian 13 (trixie) build root under target/cross/ (debootstrap, made once
# and kept): its Rust (trixie-backports) has the arm64 standard library as a Debian package,
# and its FFmpeg dev packages come for arm64 through multiarch, with the aarch64 cross gcc.
# The package it writes is for Debian 13 arm64 (a Raspberry Pi OS or a Debian on a Jetson of
# that release): dpkg-shlibdeps names that release's FFmpeg libraries.
#
# Checks, under qemu-aarch64-static with the build root's arm64 libraries: `--version`,
# `caps`, a transcode and a scene detection of small generated clips (as a mesh of one); the
# frame count and the cut list must equal those of this box's own build (target/release).
#
# Slow: a release cross build takes about as long as a native one (7–10 min on 2 cores), and
# the first run fetches about 1.5 GB of packages. Not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${1:-$REPO/target/deb}
ROOT_FS=$REPO/target/cross/root-trixie
TRIPLE=aarch64-unknown-linux-gnu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { echo "cross-arm64: $*" >&2; }

for p in debootstrap qemu-user-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
        say "installing $p"
        $SUDO apt-get install -y -qq "$p" >/dev/null
    }
done
QEMU=$(command -v qemu-aarch64-static)

in_root() { $SUDO chroot "$ROOT_FS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

if [[ ! -x $ROOT_FS/usr/bin/aarch64-linux-gnu-gcc ]]; then
    if [[ ! -x $ROOT_FS/usr/bin/apt-get ]]; then
        say "making the Debian 13 build root (debootstrap)"
        $SUDO mkdir -p "$ROOT_FS"
        $SUDO debootstrap --variant=minbase --include=ca-certificates trixie "$ROOT_FS" \
            http://deb.debian.org/debian >/dev/null
    fi
    printf 'deb http://deb.debian.org/debian trixie main\ndeb http://deb.debian.org/debian trixie-backports main\n' |
        $SUDO tee "$ROOT_FS/etc/apt/sources.list" >/dev/null
    in_root dpkg --add-architecture arm64
    in_root apt-get update -qq
    say "installing the cross toolchain and the arm64 FFmpeg libraries in the build root"
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t trixie-backports rustc cargo libstd-rust-dev:arm64 >/dev/null
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu pkg-config \
        libclang-dev clang dpkg-dev file \
        libavcodec-dev:arm64 libavformat-dev:arm64 libavutil-dev:arm64 libswscale-dev:arm64 \
        libswresample-dev:arm64 libavfilter-dev:arm64 libavdevice-dev:arm64 >/dev/null
fi

mounted=""
cleanup() { [[ -z $mounted ]] || $SUDO umount "$ROOT_FS/proc" 2>/dev/null || true; }
trap cleanup EXIT
if ! mountpoint -q "$ROOT_FS/proc"; then
    $SUDO mount -t proc proc "$ROOT_FS/proc"
    mounted=1
fi

say "copying the sources (tracked files) into the build root"
$SUDO rm -rf "$ROOT_FS/src"
$SUDO mkdir -p "$ROOT_FS/src" "$ROOT_FS/root/.cargo"
git ls-files -z | tar --null -T - -c | $SUDO tar -x -C "$ROOT_FS/src"
# the crates this box already fetched, so the build root does not fetch them again
if [[ -d $HOME/.cargo/registry && ! -d $ROOT_FS/root/.cargo/registry ]]; then
    $SUDO cp -a "$HOME/.cargo/registry" "$ROOT_FS/root/.cargo/"
fi

say "building for $TRIPLE (release)"
in_root env \
    CARGO_TARGET_DIR=/build \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    PKG_CONFIG_ALLOW_CROSS=1 \
    PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
    BINDGEN_EXTRA_CLANG_ARGS="--target=aarch64-linux-gnu -I/usr/include/aarch64-linux-gnu" \
    sh -c "cd /src && cargo build --release --locked --target $TRIPLE -p rendermesh-node"
BIN=$ROOT_FS/build/$TRIPLE/release/rendermesh
file "$BIN" | grep -q "ARM aarch64" || { say "$BIN is not an arm64 binary"; exit 1; }

# this box's own build, for the comparison
HOST_BIN=$REPO/target/release/rendermesh
[[ -x $HOST_BIN ]] || cargo build --release -q -p rendermesh-node

# the arm64 binary runs inside the build root, under qemu, where its libraries' links resolve
$SUDO install -m 0755 "$QEMU" "$ROOT_FS/usr/local/bin/qemu-aarch64-static"
$SUDO rm -rf "$ROOT_FS/check"
$SUDO mkdir -p "$ROOT_FS/check"
WORK=$ROOT_FS/check
arm() {
    in_root env RENDERMESH_CALIBRATION_FRAMES=2 RENDERMESH_LOG=warn \
        /usr/local/bin/qemu-aarch64-static "/build/$TRIPLE/release/rendermesh" "$@"
}
trap 'cleanup; $SUDO rm -rf "$WORK"' EXIT
say "checking the arm64 binary under qemu-user-static"
arm --version
arm --data-dir /check/caps caps >"$WORK/caps.txt"
grep -q "libx264" "$WORK/caps.txt" || { cat "$WORK/caps.txt"; say "caps lists no libx264"; exit 1; }
head -5 "$WORK/caps.txt"

# a clip of three scenes (cuts at frames 40 and 100 of 150) and its transcode and cut list,
# by both builds, each as a mesh of one
ffmpeg -v error -f lavfi -i "testsrc2=size=320x240:rate=25:duration=1.6" \
    -f lavfi -i "smptebars=size=320x240:rate=25:duration=2.4" \
    -f lavfi -i "mandelbrot=size=320x240:rate=25:end_pts=2" \
    -filter_complex "[0:v][1:v][2:v]concat=n=3:v=1[v]" -map "[v]" -frames:v 150 \
    -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p "$WORK/clip.mp4"
for who in arm host; do
    run=(arm) dir=/check
    [[ $who == host ]] && run=("$HOST_BIN") dir=$WORK
    "${run[@]}" --data-dir "$dir/$who" submit transcode "$dir/clip.mp4" -o "$dir/$who.mkv" \
        --chunk-seconds 2 --preset ultrafast --local -q
    "${run[@]}" --data-dir "$dir/$who" submit scenes "$dir/clip.mp4" --json "$dir/$who.json" \
        --chunk-seconds 2 --local -q
done
frames() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1"; }
cuts() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cuts"])' "$1"; }
fa=$(frames "$WORK/arm.mkv"); fh=$(frames "$WORK/host.mkv")
ca=$(cuts "$WORK/arm.json"); ch=$(cuts "$WORK/host.json")
say "transcode: arm64 $fa frames, amd64 $fh frames; cuts: arm64 $ca, amd64 $ch"
[[ $fa == "$fh" && $fa == 150 ]] || { say "frame counts differ"; exit 1; }
[[ $ca == "$ch" ]] || { say "cut lists differ"; exit 1; }

say "packaging"
in_root env ARCH=arm64 RUN=/usr/local/bin/qemu-aarch64-static STRIP=aarch64-linux-gnu-strip \
    bash /src/packaging/deb/build.sh "/build/$TRIPLE/release/rendermesh" /out >"$WORK/deb.txt"
deb=$ROOT_FS$(cat "$WORK/deb.txt")
mkdir -p "$OUT"
cp "$deb" "$OUT/"
say "Depends: $(dpkg-deb -f "$deb" Depends)"
echo "$OUT/$(basename "$deb")"
