#!/usr/bin/env bash
# Export a directory (typically an imgfs mount) read-only over NFSv4 on 127.0.0.1 with NFS-Ganesha,
# without a kernel NFS server and without rpcbind. See docs/nfs.md.
#
#   scripts/nfs-server.sh start EXPORT_DIR PORT STATEDIR   writes STATEDIR/ganesha.conf, starts
#                                                          ganesha.nfsd, waits until PORT accepts
#                                                          connections, prints the server's PID
#   scripts/nfs-server.sh stop STATEDIR                    stops the server by its pidfile and waits
#   scripts/nfs-server.sh reexport STATEDIR                the server stays up and opens EXPORT_DIR
#                                                          afresh: after `imgfs umount -z` and a new
#                                                          `imgfs mount` there, it serves the new
#                                                          mount (the old daemon then exits)
#
# The export's pseudo path is /img: `nfs-ls 'nfs://127.0.0.1:PORT/img?version=4'`.
# Environment: FSID (default 4242, the export's Filesystem_id major number), FSID_TYPE (default
# Major64, the VFS FSAL's fsid_type: see below; empty leaves Ganesha's default), GANESHA (the
# binary, default ganesha.nfsd), START_TIMEOUT (seconds, default 20).
set -euo pipefail

usage() {
  echo "usage: $0 start EXPORT_DIR PORT STATEDIR | stop STATEDIR | reexport STATEDIR" >&2
  exit 2
}

# Is 127.0.0.1:$1 accepting TCP connections?
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local export_dir=$1 port=$2 state=$3
  [ -d "$export_dir" ] || { echo "$0: $export_dir is not a directory" >&2; exit 1; }
  [[ $port =~ ^[0-9]+$ ]] && [ "$port" -gt 0 ] && [ "$port" -lt 65536 ] \
    || { echo "$0: bad port $port" >&2; exit 1; }
  local bin=${GANESHA:-ganesha.nfsd}
  command -v "$bin" >/dev/null || { echo "$0: $bin not found (scripts/install-deps.sh installs nfs-ganesha)" >&2; exit 1; }
  mkdir -p "$state/recovery"
  state=$(cd "$state" && pwd)
  export_dir=$(cd "$export_dir" && pwd)
  if [ -f "$state/ganesha.pid" ] && kill -0 "$(cat "$state/ganesha.pid")" 2>/dev/null; then
    echo "$0: a server is already running from $state (pid $(cat "$state/ganesha.pid"))" >&2
    exit 1
  fi
  if port_open "$port"; then
    echo "$0: 127.0.0.1:$port is already in use" >&2
    exit 1
  fi
  # Ganesha's VFS handles start with the fsid of the file system they belong to. A FUSE mount
  # has f_fsid 0, so by default that fsid is its device number 0:N, and N changes on every mount:
  # after an imgfs restart every handle a client holds would be NFS4ERR_STALE. Major64 puts only
  # the major number (0) in handles, which stays the same; the FUSE part (the inode number) does
  # too, so handles survive the restart (tests/it/nfs.rs, docs/nfs.md). It suits one FUSE export
  # per server, which is what this script runs.
  local fsid_type_line=""
  [ -n "${FSID_TYPE-Major64}" ] && fsid_type_line="fsid_type = ${FSID_TYPE-Major64};"
  cat >"$state/ganesha.conf" <<EOF
# Written by imgfs scripts/nfs-server.sh
NFS_CORE_PARAM {
    Bind_addr = 127.0.0.1;
    NFS_Port = $port;
    Protocols = 4;
    Enable_UDP = false;
    Enable_NLM = false;
    Enable_RQUOTA = false;
}
NFSv4 {
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = "$state/recovery";
    Only_Numeric_Owners = true;
}
NFS_KRB5 {
    Active_krb5 = false;
}
EXPORT_DEFAULTS {
    Transports = TCP;
    Protocols = 4;
    SecType = sys;
}
EXPORT {
    Export_Id = 1;
    Path = "$export_dir";
    Pseudo = /img;
    Access_Type = RO;
    Squash = No_Root_Squash;
    Filesystem_id = ${FSID:-4242}.0;
    FSAL {
        Name = VFS;
        $fsid_type_line
    }
}
LOG {
    Default_Log_Level = EVENT;
}
EOF
  rm -f "$state/ganesha.pid"
  # Detached from our stdout/stderr so callers capturing them are not held open.
  setsid "$bin" -F -f "$state/ganesha.conf" -L "$state/ganesha.log" -p "$state/ganesha.pid" \
    </dev/null >>"$state/ganesha.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$state/ganesha.pid.launch"
  local deadline=$((SECONDS + ${START_TIMEOUT:-20}))
  until port_open "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$0: ganesha.nfsd exited early; last lines of $state/ganesha.log:" >&2
      tail -n 20 "$state/ganesha.log" >&2 2>/dev/null || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$0: ganesha.nfsd did not listen on 127.0.0.1:$port within ${START_TIMEOUT:-20}s" >&2
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.05
  done
  # ganesha writes its own pidfile (the same process as $pid: -F keeps it in the foreground, and
  # setsid only forks when called as a process group leader); that file is what `stop` uses.
  [ -s "$state/ganesha.pid" ] || echo "$pid" >"$state/ganesha.pid"
  tr -dc 0-9 <"$state/ganesha.pid"
  echo
}

stop() {
  local state=$1 pid=""
  for f in "$state/ganesha.pid" "$state/ganesha.pid.launch"; do
    if [ -s "$f" ]; then pid=$(tr -dc 0-9 <"$f"); [ -n "$pid" ] && break; fi
  done
  [ -n "$pid" ] || { echo "$0: no pidfile in $state" >&2; exit 1; }
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    local i
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$0: ganesha.nfsd ($pid) ignored SIGTERM for 10s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$state/ganesha.pid" "$state/ganesha.pid.launch"
}

# PID of the running server, from its pidfile.
server_pid() {
  local state=$1 f pid
  for f in "$state/ganesha.pid" "$state/ganesha.pid.launch"; do
    if [ -s "$f" ]; then pid=$(tr -dc 0-9 <"$f"); [ -n "$pid" ] && { echo "$pid"; return; }; fi
  done
  echo "$0: no pidfile in $state" >&2
  exit 1
}

# SIGHUP makes ganesha reread its exports; waits until its log says it has (10 s at most).
reload() {
  local state=$1 pid=$2 before i
  before=$(grep -c "Reread exports complete" "$state/ganesha.log" || true)
  kill -HUP "$pid"
  for i in $(seq 200); do
    [ "$(grep -c "Reread exports complete" "$state/ganesha.log" || true)" -gt "$before" ] && return 0
    sleep 0.05
  done
  echo "$0: ganesha.nfsd ($pid) did not reload its exports within 10s" >&2
  exit 1
}

# Ganesha keeps the export's directory open, so a mount made there later is not seen until the
# export is dropped and made again. Both happen by config reload: the server process, its clients'
# connections and (with imgfs's stable inode numbers) their file handles all stay valid; requests
# during the few milliseconds without an export fail and are retried by clients.
reexport() {
  local state=$1 pid
  pid=$(server_pid "$state")
  kill -0 "$pid" 2>/dev/null || { echo "$0: ganesha.nfsd ($pid) is not running" >&2; exit 1; }
  cp "$state/ganesha.conf" "$state/ganesha.conf.full"
  # Everything but the EXPORT block (it ends at the first line that is a lone "}").
  awk '/^EXPORT \{/ { skip = 1 } !skip { print } skip && /^\}/ { skip = 0 }' \
    "$state/ganesha.conf.full" >"$state/ganesha.conf"
  reload "$state" "$pid"
  mv "$state/ganesha.conf.full" "$state/ganesha.conf"
  reload "$state" "$pid"
}

case ${1:-} in
  start) [ $# -eq 4 ] || usage; start "$2" "$3" "$4" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  reexport) [ $# -eq 2 ] || usage; reexport "$2" ;;
  *) usage ;;
esac
