#!/usr/bin/env bash
# Assembles the driver's runtime image without a container engine: the same file tree the
# Containerfile's runtime stage holds (the binary, every shared library ldd names with the
# dynamic loader, libcurl and its libraries, CA certificates, what glibc reads to resolve
# host names), as
#   OUT/rootfs/          the tree itself (tests run the driver in it with chroot)
#   OUT/rootfs.tar       a plain rootfs tarball
#   OUT/oci-image.tar    an OCI image layout (umoci, no daemon), tag :latest, entrypoint set
# Usage: scripts/image-rootfs.sh DRIVER_BINARY OUT_DIR [OPERATOR_BINARY]
# (the operator ships in the same image, as deploy/Containerfile builds it)
set -euo pipefail
bin=${1:?usage: image-rootfs.sh DRIVER_BINARY OUT_DIR [OPERATOR_BINARY]}
out=${2:?usage: image-rootfs.sh DRIVER_BINARY OUT_DIR [OPERATOR_BINARY]}
operator=${3:-}
[ -x "$bin" ] || { echo "no driver binary at $bin" >&2; exit 1; }
rm -rf "$out/rootfs" "$out/rootfs.tar" "$out/oci-image.tar" "$out/oci"
root="$out/rootfs"
mkdir -p "$root"/{usr/local/bin,etc/ssl/certs,tmp,var/run,run,proc,dev,csi}
chmod 1777 "$root/tmp"

install -m 0755 "$bin" "$root/usr/local/bin/secrets-store-csi-driver"
strip "$root/usr/local/bin/secrets-store-csi-driver" 2>/dev/null || true
if [ -n "$operator" ]; then
  [ -x "$operator" ] || { echo "no operator binary at $operator" >&2; exit 1; }
  install -m 0755 "$operator" "$root/usr/local/bin/secrets-store-csi-driver-operator"
  strip "$root/usr/local/bin/secrets-store-csi-driver-operator" 2>/dev/null || true
fi

# Every library the binary links, by the path the loader finds it at, plus the loader.
copy_lib() {
  local src=$1 real
  real=$(readlink -f "$src")
  mkdir -p "$root$(dirname "$src")"
  cp -L "$real" "$root$src"
}
# libcurl is not linked but loaded (dlopen) on the first HTTP request, in cluster mode and
# by the operator: it goes in with every library it links.
# (awk reads to the end: stopping early would kill ldconfig with SIGPIPE, an error under pipefail)
curl_lib=$(ldconfig -p | awk '$1 == "libcurl.so.4" && /x86-64/ && !found { print $NF; found = 1 }')
[ -n "$curl_lib" ] || { echo "libcurl.so.4 is not installed (ldconfig -p)" >&2; exit 1; }
copy_lib "$curl_lib"
missing=$(for b in "$bin" $operator "$curl_lib"; do ldd "$b"; done | grep 'not found' || true)
[ -z "$missing" ] || { echo "unresolved libraries: $missing" >&2; exit 1; }
# `lib => /path (addr)` lines, and the loader, which ldd names by its own path.
for b in "$bin" $operator "$curl_lib"; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u | while read -r lib; do
  copy_lib "$lib"
done
# Host names (a kubeconfig server, a provider's store) resolve through NSS, which glibc
# loads at run time rather than linking: files and DNS.
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libresolv.so.2; do
  [ -e "$lib" ] && copy_lib "$lib"
done
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$out/rootfs.tar" .

if command -v umoci >/dev/null; then
  umoci init --layout "$out/oci" >/dev/null
  umoci new --image "$out/oci:latest" >/dev/null
  umoci insert --rootless --image "$out/oci:latest" "$root" / >/dev/null
  umoci config --image "$out/oci:latest" --config.entrypoint /usr/local/bin/secrets-store-csi-driver \
    --config.user 0:0 --architecture amd64 --os linux >/dev/null
  tar -C "$out/oci" -cf "$out/oci-image.tar" .
  rm -rf "$out/oci"
fi
du -sh "$root" "$out"/*.tar 2>/dev/null
