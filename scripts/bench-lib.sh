# Helpers of scripts/bench (sourced; uses its globals: RUN, IN, WORKDIR, IMGFS, RUNS, LIMIT...).
# shellcheck shell=bash
# shellcheck disable=SC2034 # globals set here are read by scripts/bench
# shellcheck disable=SC2016 # backquotes in single quotes are markdown

MOUNTS=()
DROP_OK=1
REPORT_PY=$REPO/scripts/bench_report.py

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
section() { log "== $*"; }
die() { log "error: $*"; exit 1; }
note() { log "note: $*"; record type=note "text=$*"; }
problem() { log "PROBLEM: $*"; record type=problem "text=$*"; }

# ---------------------------------------------------------------------------------------------
# Measurements are recorded raw in $RUN/rows.jsonl, one JSON object per line; scripts/bench_report.py
# computes best, median and ratios from them and writes the report (its docstring has the format).
# Here: recording, and the report's own number formats for labels and messages.

# Seconds elapsed since $1 (an $EPOCHREALTIME value).
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }'; }
# One number as the report formats it (bench_report.py fmt): time, size, mbps, rate, ratio, pct.
fmt_time() { python3 "$REPORT_PY" fmt time "$1"; }
fmt_size() { python3 "$REPORT_PY" fmt size "$1"; }
mbps() { python3 "$REPORT_PY" fmt mbps "$1" "$2"; }
rate() { python3 "$REPORT_PY" fmt rate "$1" "$2"; }
pct() { python3 "$REPORT_PY" fmt pct "$1" "$2"; }

# record KEY=TEXT|KEY:=JSON...: one object of $RUN/rows.jsonl.
record() {
  jq -nc '$ARGS.positional | map(capture("^(?<k>[A-Za-z_]+)(?<j>:?)=(?<v>.*)$"; "s")
    | {(.k): (if .j == ":" then (.v | fromjson) else .v end)}) | add' --args "$@" >> "$RUN/rows.jsonl"
}
# nums N...: a JSON list of the arguments that are numbers.
nums() { jq -nc '[$ARGS.positional[] | tonumber?]' --args "$@"; }
# series NAME "N N N" [NAME "N N N"]...: named lists of numbers, for the expressions of cells (a
# NAME is not an operator of the expressions: not "size", "time", "min"...).
series() {
  jq -nc '$ARGS.positional as $a | reduce range(0; $a | length; 2) as $i ({};
    .[$a[$i]] = [$a[$i + 1] | splits(" +") | select(. != "") | tonumber?])' --args "$@"
}
# cells NAME PART... [NAME PART...]...: table cells (NAME: best, median, ratio or notes) as lists of
# parts: "=TEXT" is text, "@EXPR" a value bench_report.py computes (e.g. "@hwm med size").
cells() {
  jq -nc 'reduce $ARGS.positional[] as $a ({o: {}, k: null};
    if ($a | startswith("@")) then .o[.k] += [{x: $a[1:]}]
    elif ($a | startswith("=")) then .o[.k] += [$a[1:]]
    else .k = $a | .o[$a] = [] end) | .o' --args "$@"
}

# ---------------------------------------------------------------------------------------------
# Table rows: "| measurement | best | median | ratio | notes |". ROW_ID (set for one call) names
# a row that others take ratios to; ROW_SERIES (JSON from `series`) gives a row more lists of
# numbers for its cells' expressions.

# add_row LABEL BEST MEDIAN RATIO NOTES: a row of text.
add_row() {
  record type=row "id=${ROW_ID:-$1}" "label=$1" kind=text "cells:=$(cells best "=$2" median "=$3" ratio "=$4" notes "=$5")"
  log "row: $1 | $2 | $3 | $4 | $5"
}
# xrow LABEL CELLS [KEY=...]...: a row of computed cells (CELLS from `cells`).
xrow() {
  record type=row "id=${ROW_ID:-$1}" "label=$1" kind=text "cells:=$2" "series:=${ROW_SERIES:-null}" "${@:3}"
  log "row: $1"
}
fail_row() { add_row "$1" "FAILED" "" "" "$2"; problem "$1: $2"; }
# time_row LABEL REF_ID REF_NAME NOTE_PART... -- TIMES...: best/median time, median as a ratio to the
# median of row REF_ID (none if empty). NOTE_PARTs as for `cells`.
time_row() {
  local label=$1 ref=$2 refname=$3 notes=()
  shift 3
  while (($#)) && [[ $1 != -- ]]; do notes+=("$1"); shift; done
  shift
  record type=row "id=${ROW_ID:-$label}" "label=$label" kind=time "ref=$ref" "ref_name=$refname" \
    "values:=$(nums "$@")" "series:=${ROW_SERIES:-null}" "cells:=$(cells notes "${notes[@]}")"
  log "row: $label: $*"
}
# Rows of the random-file and sequential-read groups are recorded with their group, and printed
# together where `place_rows` puts them (the rows of a group since its last place).
rand_label() { echo "$NRAND random files < 64 KiB ($(fmt_size "$FILE_BYTES")), cold page cache: $1"; }
seq_label() { echo "sequential read of the largest file ($(fmt_size "$LARGEST_SIZE")), cold page cache: $1"; }
# rand_row NAME NOTES TIMES...: files/s of the best and median run, ratio to the local fs's median.
rand_row() {
  local name=$1 notes=$2
  shift 2
  record type=row "id=${ROW_ID:-rand: $name}" group=rand "label=$(rand_label "$name")" kind=rate "count:=$NRAND" \
    "ref=$RAND_REF" "ref_name=local fs" "values:=$(nums "$@")" "cells:=$(cells notes "=$notes")"
  log "row: random files, $name: $*"
}
# seq_row NAME NOTES TIMES...: MB/s of the largest file, ratio to the local fs's median.
seq_row() {
  local name=$1 notes=$2
  shift 2
  record type=row "id=${ROW_ID:-seq: $name}" group=seq "label=$(seq_label "$name")" kind=mbps "bytes:=$LARGEST_SIZE" \
    "ref=$SEQ_REF" "ref_name=local fs" "values:=$(nums "$@")" "cells:=$(cells notes "=$notes")"
  log "row: sequential, $name: $*"
}
# rand_text NAME CELLS / seq_text NAME CELLS: a row of text in those groups (n/a, FAILED).
rand_text() { record type=row group=rand "label=$(rand_label "$1")" kind=text "cells:=$2"; }
seq_text() { record type=row group=seq "label=$(seq_label "$1")" kind=text "cells:=$2"; }
# The random-file rows, then the sequential ones, recorded since the last call.
place_rows() { record type=place group=rand; record type=place group=seq; }

# ---------------------------------------------------------------------------------------------
# Page cache, processes, mounts.

drop_caches() {
  sync
  if ! echo 3 > /proc/sys/vm/drop_caches 2> /dev/null; then
    ((DROP_OK)) && note "cannot drop the page cache: 'cold' rows ran with a warm page cache"
    DROP_OK=0
  fi
}

# True when process $1 is alive and has an argument equal to $2 (guards against PID reuse).
alive_with_arg() {
  local a
  [[ -r /proc/$1/cmdline ]] || return 1
  while IFS= read -r -d '' a; do
    [[ $a == "$2" ]] && return 0
  done 2> /dev/null < "/proc/$1/cmdline"
  return 1
}
# PID of the process with an argument equal to $1 (a mount dir: unique per run).
pid_with_arg() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$BASHPID" || $p == "$$" ]] && continue
    if alive_with_arg "$p" "$1"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
vm_hwm() { awk '/^VmHWM:/ { print $2 * 1024 }' "/proc/$1/status" 2> /dev/null || echo 0; }
io_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/io" 2> /dev/null || echo 0; }

wait_gone() { # pid arg seconds
  local n=$(($3 * 10))
  while ((n-- > 0)) && alive_with_arg "$1" "$2"; do sleep 0.1; done
  ! alive_with_arg "$1" "$2"
}
stop_pid() { # pid arg: only a process of ours that did not exit after its unmount
  alive_with_arg "$1" "$2" || return 0
  problem "process $1 ($(tr '\0' ' ' < "/proc/$1/cmdline" 2> /dev/null | cut -c1-120)) did not exit after unmount; sending TERM"
  kill -TERM "$1" 2> /dev/null || true
  wait_gone "$1" "$2" 5 && return 0
  kill -KILL "$1" 2> /dev/null || true
  wait_gone "$1" "$2" 5 || true
}

new_mnt() { MNT=$(mktemp -d "$RUN/mnt.XXXXXX"); }

# imgfs_mount SOURCE MNT CACHE_DIR [LOG_FILE]: sets DPID to the daemon's PID. The daemon logs to
# LOG_FILE (default $LOG) at the level RUST_LOG gives (imgfs's default: warnings).
imgfs_mount() {
  DPID=""
  imgfs_mount_only "$@" || return 1
  DPID=$(pid_with_arg "$2") || DPID=""
  [[ -n $DPID ]] || problem "mounted $2 but found no imgfs daemon with it in its command line"
  return 0
}

# imgfs_mount_only SOURCE MNT CACHE_DIR [LOG_FILE]: the mount alone, for timed rows (finding the
# daemon's PID scans /proc: 3-5 ms of this script's own work).
imgfs_mount_only() {
  MOUNTS+=("imgfs|$2")
  if ! timeout -k 5 "$LIMIT" "$IMGFS" mount "$1" "$2" --cache-dir "$3" -o "log=${4:-$LOG}" 2> "$RUN/mount.err"; then
    MOUNT_ERR=$(head -c 300 "$RUN/mount.err" | tr '\n' ' ')
    return 1
  fi
}

# Unmounts everything this script mounted (imgfs by `imgfs umount`, others by fusermount) and
# waits for each daemon to exit; a daemon that stays is stopped by its PID.
unmount_all() {
  local m kind mnt pid
  for m in "${MOUNTS[@]}"; do
    kind=${m%%|*} mnt=${m#*|}
    pid=$(pid_with_arg "$mnt") || pid=""
    for _ in 1 2 3 4 5; do
      mountpoint -q "$mnt" || break
      case $kind in
        imgfs) timeout -k 5 60 "$IMGFS" umount "$mnt" ;;
        archivemount) timeout -k 5 60 fusermount -u "$mnt" ;;
        *) timeout -k 5 60 fusermount3 -u "$mnt" ;;
      esac >> "$RUN/umount.log" 2>&1 && break
      sleep 1
    done
    if mountpoint -q "$mnt"; then
      problem "could not unmount $mnt ($kind): $(tail -n1 "$RUN/umount.log"); lazy unmount"
      fusermount3 -u -z "$mnt" 2> /dev/null || umount -l "$mnt" 2> /dev/null || true
    fi
    if [[ -n $pid ]] && ! wait_gone "$pid" "$mnt" 30; then
      stop_pid "$pid" "$mnt"
    fi
    rmdir "$mnt" 2> /dev/null || true
  done
  MOUNTS=()
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  unmount_all
  if [[ -n ${RUN:-} && -d $RUN ]]; then
    # Keep the report and logs; drop caches, scratch trees, the binary copy.
    find "$RUN" -mindepth 1 -maxdepth 1 ! -name '*.log' ! -name '*.md' ! -name '*.jsonl' -exec rm -rf {} +
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# The binary: built here unless --imgfs gave one (IMGFS_OPT), and copied into the run directory so
# a concurrent `cargo build` cannot swap it mid-run. Sets IMGFS, REV, BUILD_TIME.
prepare_imgfs() {
  local src t0
  if [[ -n $IMGFS_OPT ]]; then
    src=$IMGFS_OPT
  else
    log "cargo build --release"
    t0=$EPOCHREALTIME
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    BUILD_TIME=$(since "$t0")
    src=$REPO/target/release/imgfs
  fi
  cp "$src" "$RUN/imgfs"
  IMGFS=$RUN/imgfs
  REV=$(git -C "$REPO" rev-parse --short HEAD 2> /dev/null || echo unknown)
  if [[ -n $IMGFS_OPT ]]; then
    REV="binary $IMGFS_OPT (HEAD $REV)"
  elif [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock build.rs 2> /dev/null) ]]; then
    REV="$REV + uncommitted changes in src/"
  fi
}

# ---------------------------------------------------------------------------------------------
# Inputs.

# list_usr_files MIB: "type<TAB>size<TAB>path" lines of /usr/share, /usr/lib/python3*... (paths
# relative to /): the parents of those trees, then each tree sorted by name, in the order below, cut
# off once the file data reaches MIB MiB.
list_usr_files() {
  local dirs=() d a
  for d in /usr/share /usr/lib/python3* /usr/lib/gcc /usr/include /usr/sbin /usr/bin /usr/libexec /usr/lib/x86_64-linux-gnu; do
    [[ -d $d && ! -L $d ]] && dirs+=("${d#/}")
  done
  log "listing ${dirs[*]} (capped at $1 MiB of file data)"
  {
    for d in "${dirs[@]}"; do
      a=$(dirname "$d")
      while [[ $a != . ]]; do echo "$a"; a=$(dirname "$a"); done
    done | sort -u | awk '{ printf "d\t0\t%s\n", $0 }'
    for d in "${dirs[@]}"; do
      (cd / && find "$d" \( -type f -o -type d -o -type l \) ! -name $'*\n*' ! -name $'*\t*' -printf '%y\t%s\t%p\n') | sort -t $'\t' -k3,3
    done
  } | awk -F'\t' -v cap=$(($1 * 1048576)) '$1 == "f" { if (tot >= cap) done = 1; else tot += $2 } !done { print }'
}

# file_sets TSV TREE RANDLIST: from a "type<TAB>size<TAB>path" listing of TREE, sets ENTRIES,
# RANDLIST (NFILES files of 1 byte to 64 KiB, drawn by shuf with a fixed random source), NRAND,
# FILE_BYTES (their data), DEEP (the deepest of those) and LARGEST, LARGEST_SIZE.
file_sets() {
  ENTRIES=$(wc -l < "$1")
  RANDLIST=$3
  awk -F'\t' '$1 == "f" && $2 > 0 && $2 < 65536 { print $3 }' "$1" \
    | shuf -n "$NFILES" --random-source=<(yes imgfs-bench) > "$RANDLIST"
  NRAND=$(wc -l < "$RANDLIST")
  FILE_BYTES=$(awk -F'\t' 'NR == FNR { want[$0] = 1; next } ($3 in want) { s += $2 } END { print s + 0 }' "$RANDLIST" "$1")
  DEEP=$(awk -F'\t' '$1 == "f" && $2 > 0 && $2 < 65536 { n = gsub("/", "/", $3); if (n > best) { best = n; p = $3 } } END { print p }' "$1")
  LARGEST=$(awk -F'\t' '$1 == "f" && $2 > max { max = $2; p = $3 } END { print p }' "$1")
  LARGEST_SIZE=$(stat -c %s "$2/$LARGEST")
}

# Sets TGZ, sizes, TREE, the file sets (file_sets), BIG, LAYER_MT.
build_inputs() {
  mkdir -p "$IN"
  local t0
  if [[ ! -s $IN/files.tsv ]]; then
    list_usr_files "$SIZE_MB" > "$IN/files.tsv.tmp"
    cut -f3 "$IN/files.tsv.tmp" > "$IN/files.list"
    mv "$IN/files.tsv.tmp" "$IN/files.tsv"
    rm -f "$IN/layer.tar"
  fi
  if [[ ! -s $IN/layer.tar ]]; then
    log "tar --sort=name -cf layer.tar ($(wc -l < "$IN/files.list") entries)"
    local rc=0
    tar --sort=name --no-recursion --verbatim-files-from -C / -cf "$IN/layer.tar.tmp" -T "$IN/files.list" || rc=$?
    ((rc <= 1)) || die "tar failed ($rc)"
    ((rc == 0)) || note "tar: some files changed while archived (exit 1)"
    mv "$IN/layer.tar.tmp" "$IN/layer.tar"
    rm -rf "$IN/layer.tar.gz" "$IN/oci" "$IN/docker.tar" "$IN/tree" "$IN/big.tar" "$IN/tree.listing"
  fi
  if [[ ! -s $IN/layer.tar.gz ]]; then
    log "gzip -6 layer.tar"
    gzip -6 -n -c "$IN/layer.tar" > "$IN/layer.tar.gz.tmp"
    mv "$IN/layer.tar.gz.tmp" "$IN/layer.tar.gz"
  fi
  if [[ ! -s $IN/oci/index.json ]]; then
    log "umoci init + new + raw add-layer"
    rm -rf "$IN/oci.tmp"
    umoci init --layout "$IN/oci.tmp"
    umoci new --image "$IN/oci.tmp:bench"
    t0=$EPOCHREALTIME
    umoci raw add-layer --image "$IN/oci.tmp:bench" "$IN/layer.tar"
    log "umoci raw add-layer took $(fmt_time "$(since "$t0")")"
    mv "$IN/oci.tmp" "$IN/oci"
    rm -f "$IN/docker.tar"
  fi
  local mdig
  mdig=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "bench") | .digest' "$IN/oci/index.json")
  LAYER_MT=$(jq -r '.layers[0].mediaType' "$IN/oci/blobs/sha256/${mdig#sha256:}")
  local ldig
  ldig=$(jq -r '.layers[0].digest' "$IN/oci/blobs/sha256/${mdig#sha256:}")
  ln -sfn "oci/blobs/sha256/${ldig#sha256:}" "$IN/layer.oci.tar.gz"
  TGZ=$IN/layer.oci.tar.gz
  [[ $(head -c2 "$TGZ" | od -An -tx1 | tr -d ' \n') == 1f8b ]] \
    || die "the layer umoci wrote is not gzip ($LAYER_MT); the benchmark compares gzip readers"
  if [[ ! -s $IN/docker.tar ]]; then
    log "skopeo copy oci:...:bench docker-archive:docker.tar"
    rm -f "$IN/docker.tar.tmp"
    skopeo copy --quiet "oci:$IN/oci:bench" "docker-archive:$IN/docker.tar.tmp:imgfs-bench:latest"
    mv "$IN/docker.tar.tmp" "$IN/docker.tar"
  fi
  if [[ ! -d $IN/tree ]]; then
    log "tar -xzf the layer into tree/ (the local-fs peer)"
    rm -rf "$IN/tree.tmp"
    mkdir "$IN/tree.tmp"
    tar -xzf "$TGZ" -C "$IN/tree.tmp"
    mv "$IN/tree.tmp" "$IN/tree"
  fi
  TREE=$IN/tree
  if [[ ! -s $IN/tree.listing ]]; then
    tree_listing "$TREE" > "$IN/tree.listing.tmp"
    mv "$IN/tree.listing.tmp" "$IN/tree.listing"
  fi
  if ((!QUICK)) && [[ ! -s $IN/big.tar ]]; then
    # Three ~1 GiB uncompressed layers (the layer, and two copies with one extra file each).
    log "building the multi-GB docker-archive (3 layers)"
    rm -rf "$IN/big-oci" "$IN/big.tar.tmp" "$IN/big-extra"
    skopeo copy --quiet "oci:$IN/oci:bench" "oci:$IN/big-oci:big"
    mkdir -p "$IN/big-extra"
    local k
    for k in 2 3; do
      cp "$IN/layer.tar" "$IN/big-layer.tar"
      echo "layer $k" > "$IN/big-extra/imgfs-bench-layer-$k"
      tar -rf "$IN/big-layer.tar" -C "$IN/big-extra" "imgfs-bench-layer-$k"
      umoci raw add-layer --image "$IN/big-oci:big" "$IN/big-layer.tar"
    done
    skopeo copy --quiet "oci:$IN/big-oci:big" "docker-archive:$IN/big.tar.tmp:imgfs-bench-big:latest"
    mv "$IN/big.tar.tmp" "$IN/big.tar"
    rm -rf "$IN/big-oci" "$IN/big-layer.tar" "$IN/big-extra"
  fi
  if ((QUICK)); then BIG=$IN/docker.tar; else BIG=$IN/big.tar; fi

  UNC_SIZE=$(stat -c %s "$IN/layer.tar")
  GZ_SIZE=$(stat -L -c %s "$TGZ")
  GZ6_SIZE=$(stat -c %s "$IN/layer.tar.gz")
  file_sets "$IN/files.tsv" "$TREE" "$IN/random-$NFILES.list"
  log "layer: $ENTRIES entries, $(fmt_size "$UNC_SIZE") tar, $(fmt_size "$GZ_SIZE") umoci gzip ($LAYER_MT), $(fmt_size "$GZ6_SIZE") gzip -6"
}

# One line per entry: type, mode, owner, size and link count (files) or target (symlinks), path.
tree_listing() {
  (cd "$1" && find . -mindepth 1 \( -type l -printf 'l %m %U:%G -> %l %P\n' \) \
    -o \( -type f -printf 'f %m %U:%G %s n%n %P\n' \) -o -printf '%y %m %U:%G %P\n') | sort
}

# Does this imgfs read gzip layers? A tiny umoci image: `imgfs ls` and `imgfs cat` must work.
probe_gzip() {
  local p=$WORKDIR/probe out
  if [[ ! -s $p/oci/index.json ]]; then
    rm -rf "$p"
    mkdir -p "$p/files/dir"
    seq 1 700000 > "$p/files/dir/numbers" # ~4.7 MB: several gzip access points
    echo "imgfs gzip probe" > "$p/files/dir/hello"
    tar --sort=name -C "$p/files" -cf "$p/probe.tar" dir
    umoci init --layout "$p/oci.tmp"
    umoci new --image "$p/oci.tmp:probe"
    umoci raw add-layer --image "$p/oci.tmp:probe" "$p/probe.tar"
    mv "$p/oci.tmp" "$p/oci"
  fi
  GZIP_PROBE_ERR=""
  if ! out=$(timeout -k 5 60 "$IMGFS" ls --no-cache "oci:$p/oci:probe" images/probe/rootfs/dir 2>&1); then
    GZIP_PROBE_ERR="imgfs ls: $(tail -n1 <<< "$out" | cut -c1-200)"
  elif [[ $(timeout -k 5 60 "$IMGFS" cat --no-cache "oci:$p/oci:probe" images/probe/rootfs/dir/numbers 2>&1 | sha256sum) \
       != "$(sha256sum < "$p/files/dir/numbers")" ]]; then
    GZIP_PROBE_ERR="imgfs cat of a 4.7 MB file in a gzip layer gave wrong bytes"
    problem "$GZIP_PROBE_ERR"
  fi
  [[ -z $GZIP_PROBE_ERR ]]
}

# ---------------------------------------------------------------------------------------------
# Measurements.

# read_list ROOT LIST: cat every listed file (one process for all); READ_ERR on failure.
read_list() {
  READ_ERR=""
  if ! awk -v r="$1" '{ print r "/" $0 }' "$2" | timeout -k 5 "$LIMIT" xargs -d '\n' cat -- > /dev/null 2> "$RUN/read.err"; then
    READ_ERR="$(grep -c . "$RUN/read.err") read errors or a timeout ($LIMIT s); first: $(head -n1 "$RUN/read.err" | cut -c1-200)"
    return 1
  fi
}
# "sha256  path" of every listed file, paths relative to ROOT.
sha_of_list() { (cd "$1" && timeout -k 5 "$LIMIT" xargs -d '\n' sha256sum -- < "$2") 2> /dev/null || true; }

# check_bytes NAME ROOT [N [skip-largest]]: the first N (default all) random files and the largest
# file against the extracted tree (made by TREE_BY, default tar -x). Sets BYTES_NOTE and SEQ_NOTE.
check_bytes() {
  local name=$1 root=$2 n=${3:-} skip_largest=${4:-} bad got
  # The name may hold a path (--compare BIN): keep the file name flat.
  got="$RUN/random.${name//[^A-Za-z0-9._-]/_}.sha"
  if [[ -n $n ]]; then
    head -n "$n" "$RANDLIST" > "$RUN/sub.list"
    sha_of_list "$root" "$RUN/sub.list" > "$got"
    head -n "$n" "$RUN/random.sha" > "$RUN/random.want.sha"
  else
    n=$NRAND
    sha_of_list "$root" "$RANDLIST" > "$got"
    cp "$RUN/random.sha" "$RUN/random.want.sha"
  fi
  # Lines of the wanted list not matched: wrong bytes or unreadable files.
  if [[ ! -f $got ]]; then
    bad=$n
  else
    bad=$(diff "$RUN/random.want.sha" "$got" | grep -c '^<' || true)
  fi
  if ((bad == 0)); then
    BYTES_NOTE="bytes match ${TREE_BY:-tar -x}"
    ((n == NRAND)) || BYTES_NOTE="bytes of the first $n match ${TREE_BY:-tar -x}"
  else
    local first
    first=$(diff "$RUN/random.want.sha" "$got" | grep '^<' | head -n1 | awk '{ print $3 }' || true)
    BYTES_NOTE="WRONG BYTES: $bad of $n files differ from ${TREE_BY:-tar -x} (e.g. $first)"
    problem "$name: $bad of $n random files read back different bytes than ${TREE_BY:-tar -x} extracted (e.g. $first)"
  fi
  if [[ -n $skip_largest ]]; then
    SEQ_NOTE=""
  elif [[ $(timeout -k 5 "$LIMIT" sha256sum -- "$root/$LARGEST" 2> /dev/null | cut -d' ' -f1) == "$(cat "$RUN/largest.sha")" ]]; then
    SEQ_NOTE="$LARGEST; bytes match"
  else
    SEQ_NOTE="$LARGEST; WRONG BYTES"
    problem "$name: $LARGEST read back different bytes than ${TREE_BY:-tar -x} extracted"
  fi
}

# cold_index_rows SOURCE LABEL [brief]: RUNS x (empty cache dir, drop page cache, mount,
# ls -R rootfs). Sets LAST_REF, LAST_CACHE (the index cache of the last run, kept warm). Ratios
# are to row IDX_REF, named IDX_REF_NAME (default: the gzip -dc row, GZ_REF). Without brief, the
# peak RSS row is "rss-indexing", whose series "base" (the just-mounted daemon) tree_check_row uses.
cold_index_rows() {
  local src=$1 label=$2 brief=${3:-} i t0 cache prev="" ref="" err=""
  local refrow=${IDX_REF:-$GZ_REF} refname=${IDX_REF_NAME:-gzip -dc}
  local times=() mtimes=() hwms=() sizes=() bases=()
  for ((i = 1; i <= RUNS; i++)); do
    cache=$(mktemp -d "$RUN/cache.XXXXXX")
    new_mnt
    drop_caches
    t0=$EPOCHREALTIME
    if ! imgfs_mount "$src" "$MNT" "$cache"; then
      err="mount failed: $MOUNT_ERR"
      unmount_all
      break
    fi
    mtimes+=("$(since "$t0")")
    bases+=("$(vm_hwm "$DPID")")
    ref=$(ls "$MNT/images" | head -n1 || true)
    if ! timeout -k 5 "$LIMIT" ls -R "$MNT/images/$ref/rootfs" > /dev/null 2> "$RUN/ls.err"; then
      err="ls -R rootfs failed or timed out ($LIMIT s): $(head -n1 "$RUN/ls.err" | cut -c1-200)"
      unmount_all
      break
    fi
    times+=("$(since "$t0")")
    hwms+=("$(vm_hwm "$DPID")")
    unmount_all
    sizes+=("$(du -sb "$cache" | cut -f1)")
    [[ -n $prev ]] && rm -rf "$prev"
    prev=$cache
  done
  if [[ -n $err ]]; then
    fail_row "$label" "$err (imgfs log: $LOG)"
    return 1
  fi
  LAST_REF=$ref LAST_CACHE=$prev
  local sr
  sr=$(series mount "${mtimes[*]}" hwm "${hwms[*]}" index "${sizes[*]}" base "${bases[*]}")
  if [[ -n $brief ]]; then
    ROW_SERIES=$sr time_row "$label" "$refrow" "$refname" "=mount alone " "@mount med time" "=; peak RSS " "@hwm med size" \
      "=; index " "@index med size" -- "${times[@]}"
    return 0
  fi
  ROW_SERIES=$sr time_row "$label" "$refrow" "$refname" "=$ENTRIES entries; the mount alone: median " "@mount med time" -- "${times[@]}"
  ROW_ID=rss-indexing ROW_SERIES=$sr xrow "imgfs daemon peak RSS while indexing (VmHWM)" "$(cells best "@hwm min size" \
    median "@hwm med size" notes "@hwm med base med - $ENTRIES 100000 / / size" "= per 100k entries above the " \
    "@base med size" "= of the just-mounted daemon")"
  MOUNTED_BASE=rss-indexing
  ROW_SERIES=$sr xrow "imgfs index size on disk (du of the cache dir)" "$(cells median "@index med size" \
    ratio "@index med $UNC_SIZE pct" "= of the tar" notes "@index med $ENTRIES / f0" "= bytes per entry")"
}

# decompress_times CMD...: RUNS x (drop the page cache, CMD > /dev/null); sets TIMES.
decompress_times() {
  local i t0
  TIMES=()
  for ((i = 1; i <= RUNS; i++)); do
    drop_caches
    t0=$EPOCHREALTIME
    "$@" > /dev/null
    TIMES+=("$(since "$t0")")
  done
}

# warm_first_byte_row LABEL SOURCE CACHE REF FILE [PAGECACHE]: imgfs's first_byte_row.
warm_first_byte_row() {
  local label=$1 src=$2 cache=$3 ref=$4 file=$5
  first_byte_row "$label" "${6:-cold}" "images/$ref/rootfs/$file" imgfs_mount_only "$src" MNT "$cache"
}

# first_byte_row LABEL PAGECACHE PATH MOUNT_CMD ARGS...: RUNS x (MOUNT_CMD ARGS, with the word MNT
# in ARGS replaced by a fresh mount dir, then head -c1 of MNT/PATH), timed together and nothing
# else. PAGECACHE "cold" drops the page cache before each run; "warm" makes one untimed mount and
# read first instead: what a second mount of an image just used costs.
first_byte_row() {
  local label=$1 pagecache=$2 path=$3 i t0 times=() ok=1
  shift 3
  # Run 0 is the untimed warm-up of the warm page cache case.
  for ((i = 0; i <= RUNS; i++)); do
    ((i == 0)) && [[ $pagecache != warm ]] && continue
    new_mnt
    local cmd=() a
    for a in "$@"; do if [[ $a == MNT ]]; then cmd+=("$MNT"); else cmd+=("$a"); fi; done
    [[ $pagecache == warm ]] || drop_caches
    t0=$EPOCHREALTIME
    if "${cmd[@]}" && head -c1 "$MNT/$path" > /dev/null; then
      ((i > 0)) && times+=("$(since "$t0")")
    else
      ok=0
    fi
    unmount_all
  done
  if ((ok)); then
    time_row "$label" "" "" "=head -c1 of ${path##*rootfs/}" -- "${times[@]}"
  else
    fail_row "$label" "mount or read of $path failed (see $LOG)"
  fi
}

# local_read_rows TREE: the random files and the largest file read from the extracted tree (the
# reference rows RAND_REF, SEQ_REF of the ratios; FSTYPE), after noting their sha256 for check_bytes.
local_read_rows() {
  local tree=$1 i t0 times=() stimes=()
  sha_of_list "$tree" "$RANDLIST" > "$RUN/random.sha"
  sha256sum < "$tree/$LARGEST" | cut -d' ' -f1 > "$RUN/largest.sha"
  for ((i = 1; i <= RUNS; i++)); do
    drop_caches
    t0=$EPOCHREALTIME
    read_list "$tree" "$RANDLIST" || true
    times+=("$(since "$t0")")
    drop_caches
    t0=$EPOCHREALTIME
    cat "$tree/$LARGEST" > /dev/null
    stimes+=("$(since "$t0")")
  done
  FSTYPE=$(findmnt -n -o FSTYPE -T "$tree" || echo "?")
  # One pair per call: scripts/bench-layers reads two trees.
  LOCAL_N=$((${LOCAL_N:-0} + 1))
  RAND_REF="rand-local-$LOCAL_N" SEQ_REF="seq-local-$LOCAL_N"
  ROW_ID=$RAND_REF rand_row "extracted tree on $FSTYPE" "" "${times[@]}"
  ROW_ID=$SEQ_REF seq_row "extracted tree on $FSTYPE" "" "${stimes[@]}"
}

# imgfs_read_once NAME SOURCE CACHE REF LAST: one run of the read rows (mount with the warm
# CACHE, open rootfs, drop the page cache, read the random files; drop it again, read the largest
# file) with the binary $IMGFS; bytes checked when LAST is 1. Sets T_RAND, T_SEQ, READ_ERR_ONCE.
imgfs_read_once() {
  local name=$1 src=$2 cache=$3 ref=$4 last=$5 t0 root
  T_RAND="" T_SEQ="" READ_ERR_ONCE=""
  new_mnt
  imgfs_mount "$src" "$MNT" "$cache" || { READ_ERR_ONCE="mount failed: $MOUNT_ERR"; unmount_all; return 1; }
  root=$MNT/images/$ref/rootfs
  ls "$root" > /dev/null || { READ_ERR_ONCE="ls rootfs failed"; unmount_all; return 1; }
  drop_caches
  t0=$EPOCHREALTIME
  if ! read_list "$root" "$RANDLIST"; then READ_ERR_ONCE="$READ_ERR"; fi
  T_RAND=$(since "$t0")
  drop_caches
  t0=$EPOCHREALTIME
  timeout -k 5 "$LIMIT" cat "$root/$LARGEST" > /dev/null || READ_ERR_ONCE="reading $LARGEST failed or timed out"
  T_SEQ=$(since "$t0")
  if ((last)); then
    check_bytes "$name" "$root"
  fi
  unmount_all
}

# imgfs_read_rows NAME SOURCE CACHE REF [NAME2 BINARY2 CACHE2 REF2]: RUNS x imgfs_read_once; bytes
# checked on the last run. With a second binary (--compare), its runs alternate with these, so
# that both see the same machine. Records random-file and sequential rows.
imgfs_read_rows() {
  local src=$2 i j n=1
  local names=("$1") bins=("$IMGFS") caches=("$3") refs=("$4") errs=("") notes=("")
  local -A times stimes
  if (($# > 4)); then
    names+=("$5") bins+=("$6") caches+=("$7") refs+=("${8:-$4}") errs+=("") notes+=("")
    n=2
  fi
  local mine=$IMGFS
  for ((i = 1; i <= RUNS; i++)); do
    for ((j = 0; j < n; j++)); do
      [[ -z ${errs[j]} ]] || continue
      IMGFS=${bins[j]}
      if imgfs_read_once "${names[j]}" "$src" "${caches[j]}" "${refs[j]}" "$((i == RUNS))"; then
        times[$j]+=" $T_RAND" stimes[$j]+=" $T_SEQ"
        ((i == RUNS)) && notes[j]=$BYTES_NOTE
      fi
      [[ -z $READ_ERR_ONCE ]] || errs[j]=$READ_ERR_ONCE
    done
  done
  IMGFS=$mine
  for ((j = 0; j < n; j++)); do
    local name=${names[j]} err=${errs[j]}
    if [[ -n $err ]]; then
      problem "$name random/sequential reads: $err"
    fi
    if [[ -n ${times[$j]:-} ]]; then
      # shellcheck disable=SC2086 # lists of times
      rand_row "$name" "${notes[j]}${err:+; ERROR: $err}" ${times[$j]}
      # shellcheck disable=SC2086
      seq_row "$name" "$SEQ_NOTE${err:+; ERROR: $err}" ${stimes[$j]}
    else
      rand_text "$name" "$(cells best =FAILED notes "=$err")"
      seq_text "$name" "$(cells best =FAILED notes "=$err")"
    fi
  done
}

# verify_all_row LABEL SOURCE CACHE REF TREE FILES SUMS [LISTING]: the sha256 of every regular
# file (FILES: paths relative to the rootfs, in layer order) read through a mount with the warm
# CACHE, page cache dropped, against SUMS: the same over the extracted TREE, written here (page
# cache dropped too). With LISTING (tree_listing of TREE), also the type, mode, owner, size, link
# count and symlink target of every path, and the path list itself.
verify_all_row() {
  local label=$1 src=$2 cache=$3 ref=$4 tree=$5 files=$6 sums=$7 listing=${8:-}
  local n bytes t0 t tt root bad=0 what=() first=""
  drop_caches
  t0=$EPOCHREALTIME
  (cd "$tree" && xargs -d '\n' sha256sum -- < "$files") > "$sums" || die "sha256sum over $tree failed"
  tt=$(since "$t0")
  n=$(wc -l < "$files")
  bytes=$(cd "$tree" && xargs -d '\n' stat -c %s -- < "$files" | awk '{ s += $1 } END { print s + 0 }')
  new_mnt
  if ! imgfs_mount "$src" "$MNT" "$cache"; then
    fail_row "$label" "mount failed: $MOUNT_ERR"
    unmount_all
    return
  fi
  root=$MNT/images/$ref/rootfs
  ls "$root" > /dev/null 2>&1 || true
  drop_caches
  t0=$EPOCHREALTIME
  (cd "$root" && timeout -k 5 "$LIMIT" xargs -d '\n' sha256sum -- < "$files") > "$RUN/verify.sha" 2> "$RUN/verify.err" || true
  t=$(since "$t0")
  if [[ -n $listing ]]; then
    timeout -k 5 "$LIMIT" bash -c "$(declare -f tree_listing); tree_listing \"\$1\"" _ "$root" > "$RUN/verify.listing" 2>> "$RUN/verify.err" || true
  fi
  unmount_all
  # Reference lines without an equal line from imgfs: wrong bytes, or unreadable (verify.err).
  bad=$(diff "$sums" "$RUN/verify.sha" | grep -c '^<' || true)
  if ((bad)); then
    first=$(diff "$sums" "$RUN/verify.sha" | grep -m1 '^<' | cut -c 69- || true)
    what+=("$bad of $n files differ (e.g. $first)")
    cp "$RUN/verify.sha" "$RUN/verify-sha.log"
  fi
  if [[ -n $listing ]]; then
    local d
    d=$(comm -3 "$listing" "$RUN/verify.listing" | wc -l)
    if ((d)); then
      what+=("$d listing lines differ (e.g. $(comm -3 "$listing" "$RUN/verify.listing" | head -n2 | tr '\n\t' '; ' | sed 's/|/\\|/g'))")
      cp "$RUN/verify.listing" "$RUN/verify-listing.log"
    fi
  fi
  local scope timing
  scope="$n regular files ($(fmt_size "$bytes"))"
  [[ -n $listing ]] && scope+=" and the listing of all $(wc -l < "$listing") paths (type, mode, owner, size, nlink, target)"
  timing="sha256sum through imgfs (warm index, cold page cache): $(fmt_time "$t"), $(mbps "$bytes" "$t") MB/s; over the tree: $(fmt_time "$tt")"
  if ((${#what[@]})); then
    add_row "$label" "DIFFERENT" "" "" "$scope; $(IFS=';'; echo "${what[*]}"); $timing"
    problem "$label: $(IFS=';'; echo "${what[*]}") (see $RUN)"
  else
    add_row "$label" "identical" "" "" "$scope; $timing"
  fi
  if [[ -s $RUN/verify.err ]]; then
    problem "$label: errors while reading through imgfs, first: $(head -n1 "$RUN/verify.err" | cut -c1-200)"
  fi
}

# Warm index: find over the whole rootfs (stats every entry) compared with the extracted tree;
# the daemon's VmHWM after it gives the memory per 100k entries.
tree_check_row() {
  new_mnt
  if ! imgfs_mount "$SRC" "$MNT" "$WARM_CACHE"; then
    fail_row "imgfs rootfs vs tar -x tree" "mount failed: $MOUNT_ERR"
    unmount_all
    return
  fi
  local t0 t n hwm diffs base mounted
  # A warm mount loads its cached rootfs at once (Views::warm_up), so the daemon's size right after
  # this mount already holds the tree: the base is the just-mounted daemon of the cold-index row,
  # which had nothing loaded.
  mounted=$(vm_hwm "$DPID")
  # The expression of the base: the median of the cold-index row's, or this daemon's.
  base=$mounted
  [[ -n ${MOUNTED_BASE:-} ]] && base="$MOUNTED_BASE:base med"
  t0=$EPOCHREALTIME
  timeout -k 5 "$LIMIT" bash -c "$(declare -f tree_listing); tree_listing \"\$1\"" _ "$MNT/images/$REF/rootfs" > "$RUN/imgfs.listing" 2> "$RUN/find.err" || true
  t=$(since "$t0")
  hwm=$(vm_hwm "$DPID")
  unmount_all
  n=$(wc -l < "$RUN/imgfs.listing")
  diffs=$(comm -3 "$IN/tree.listing" "$RUN/imgfs.listing" | wc -l)
  if ((diffs == 0)); then
    add_row "imgfs rootfs vs tar -x tree (type, mode, owner, size, nlink, target)" "identical" "" "" "$n entries; find -printf over the mount: $(fmt_time "$t")"
  else
    local ex
    ex=$(comm -3 "$IN/tree.listing" "$RUN/imgfs.listing" | head -n4 | sed 's/^\t/imgfs: /; s/^\([^i]\)/tar -x: \1/' | tr '\n' ';' | sed 's/|/\\|/g; s/;$//' || true)
    add_row "imgfs rootfs vs tar -x tree (type, mode, owner, size, nlink, target)" "$diffs lines differ" "" "" "$n entries (tar -x: $(wc -l < "$IN/tree.listing")); e.g. $ex"
    problem "rootfs listing differs from the tar -x tree in $diffs lines, e.g. $ex (full: $RUN/imgfs.listing vs $IN/tree.listing)"
    cp "$RUN/imgfs.listing" "$RUN/imgfs-listing.log" 2> /dev/null || true
  fi
  if [[ -s $RUN/find.err ]]; then
    problem "find over rootfs printed errors: $(head -n1 "$RUN/find.err" | cut -c1-200)"
  fi
  local per=("=?") raw=("=")
  ((n > 0)) && per=("@$hwm $base - $n 100000 / / mib1") raw=("@$hwm $n 100000 / / mib1")
  xrow "imgfs daemon peak RSS per 100k entries (warm index, after find over rootfs)" "$(cells best "${per[@]}" \
    notes "=VmHWM $(fmt_size "$hwm") for $n entries; a just-mounted daemon with nothing loaded: " "@$base size" \
    "=; this one after its mount (rootfs loaded by the warm-up): $(fmt_size "$mounted"); " "${raw[@]}" \
    "= per 100k without subtracting that")"
}

ensure_ratarmount() {
  RAT=$WORKDIR/venv/bin/ratarmount
  if [[ ! -x $RAT ]]; then
    command -v python3 > /dev/null || { RAT_ERR="python3 not installed"; return 1; }
    log "python3 -m venv $WORKDIR/venv && pip install ratarmount"
    rm -rf "$WORKDIR/venv"
    if ! python3 -m venv "$WORKDIR/venv" > "$RUN/pip.log" 2>&1; then
      RAT_ERR="python3 -m venv failed: $(tail -n1 "$RUN/pip.log")"
      rm -rf "$WORKDIR/venv"
      return 1
    fi
    # indexed_zstd: ratarmount's zstd backend (scripts/bench-layers runs it on a zstd layer).
    if ! "$WORKDIR/venv/bin/pip" install -q ratarmount indexed_zstd >> "$RUN/pip.log" 2>&1 || [[ ! -x $RAT ]]; then
      RAT_ERR="pip install ratarmount failed: $(tail -n1 "$RUN/pip.log" | cut -c1-150)"
      rm -rf "$WORKDIR/venv"
      return 1
    fi
  fi
  # A venv made before indexed_zstd was wanted gets it now.
  "$WORKDIR/venv/bin/python" -c 'import indexed_zstd' 2> /dev/null \
    || "$WORKDIR/venv/bin/pip" install -q indexed_zstd >> "$RUN/pip.log" 2>&1 || true
  RAT_VER="$("$RAT" --version 2> /dev/null | head -n1 || true) (rapidgzip $("$WORKDIR/venv/bin/pip" show rapidgzip 2> /dev/null | awk '/^Version:/ { print $2 }'), indexed_zstd $("$WORKDIR/venv/bin/pip" show indexed_zstd 2> /dev/null | awk '/^Version:/ { print $2 }'))"
}

rat_mount() { # gs index mnt
  rat_mount_only "$@" || return 1
  DPID=$(pid_with_arg "$3") || DPID=""
}
rat_mount_only() { # gs index mnt
  local args=()
  [[ -n $1 ]] && args+=(--gzip-seek-point-spacing "$1")
  MOUNTS+=("ratarmount|$3")
  timeout -k 5 "$LIMIT" "$RAT" "${args[@]}" --index-file "$2" "$TGZ" "$3" >> "$RUN/ratarmount.log" 2>&1
}

# ratarmount_rows GS: cold index (PEER_RUNS x), then random files and the largest file with the
# warm index. GS is the gzip seek-point spacing in MiB ("" = ratarmount's default, 16).
ratarmount_rows() {
  local gs=$1 name="ratarmount${1:+ -gs $1}${RAT_WHAT:+, $RAT_WHAT}" na
  if ! ensure_ratarmount; then
    na="n/a ($RAT_ERR)"
    add_row "$name cold index: mount + ls -R" "$na" "" "" ""
    rand_text "$name" "$(cells best "=$na")"
    seq_text "$name" "$(cells best "=$na")"
    return
  fi
  section "$name ($RAT_VER)"
  local i t0 idx prev="" times=() hwms=() err=""
  for ((i = 1; i <= PEER_RUNS; i++)); do
    idx=$RUN/ratarmount-gs${gs:-default}-$i.index.sqlite
    new_mnt
    drop_caches
    t0=$EPOCHREALTIME
    if ! rat_mount "$gs" "$idx" "$MNT" || ! timeout -k 5 "$LIMIT" ls -R "$MNT" > /dev/null 2> "$RUN/ls.err"; then
      err="mount or ls -R failed (see $RUN/ratarmount.log)"
      unmount_all
      break
    fi
    times+=("$(since "$t0")")
    hwms+=("$(vm_hwm "$DPID")")
    unmount_all
    [[ -n $prev ]] && rm -f "$prev"
    prev=$idx
  done
  if [[ -n $err ]]; then
    add_row "$name cold index: mount + ls -R" "FAILED" "" "" "$err"
    rand_text "$name" "$(cells best "=n/a (no index)")"
    seq_text "$name" "$(cells best "=n/a (no index)")"
    return
  fi
  # Which gzip backend it picked (indexed_gzip for small archives, rapidgzip for big ones): one
  # untimed mount with debug output.
  local backend
  new_mnt
  MOUNTS+=("ratarmount|$MNT")
  timeout -k 5 "$LIMIT" "$RAT" -d 3 --index-file "$prev" "$TGZ" "$MNT" > "$RUN/ratarmount-debug.log" 2>&1 || true
  unmount_all
  backend=$(sed -n 's/.*compression by using: \([A-Za-z_]*\) with parallelization=\([0-9]*\).*/\1, parallelization \2/p' "$RUN/ratarmount-debug.log" | head -n1 || true)
  ROW_SERIES=$(series hwm "${hwms[*]}") time_row "$name cold index: mount + ls -R" "$GZ_REF" "gzip -dc" \
    "=$RAT_VER, backend ${backend:-?}$([[ -n ${RAT_WHAT:-} ]] || echo ", a gzip seek point every ${gs:-16} MiB"); index $(fmt_size "$(stat -c %s "$prev")"); peak RSS " \
    "@hwm med size" "=$( ((PEER_RUNS == 1)) && echo '; 1 run')" -- "${times[@]}"
  times=()
  local stimes=()
  err=""
  for ((i = 1; i <= PEER_RUNS; i++)); do
    new_mnt
    rat_mount "$gs" "$prev" "$MNT" && ls "$MNT" > /dev/null || { err="mount with the warm index failed"; unmount_all; break; }
    drop_caches
    t0=$EPOCHREALTIME
    read_list "$MNT" "$RANDLIST" || err=$READ_ERR
    times+=("$(since "$t0")")
    drop_caches
    t0=$EPOCHREALTIME
    timeout -k 5 "$LIMIT" cat "$MNT/$LARGEST" > /dev/null || err="reading $LARGEST failed"
    stimes+=("$(since "$t0")")
    ((i == PEER_RUNS)) && check_bytes "$name" "$MNT"
    unmount_all
  done
  local runs=""
  ((PEER_RUNS == 1)) && runs="1 run; "
  [[ -n $err ]] || RUNS=$PEER_RUNS first_byte_row "$name warm mount + first byte (warm page cache)" warm \
    "$DEEP" rat_mount_only "$gs" "$prev" MNT
  if ((${#times[@]})); then
    rand_row "$name" "${runs}warm index; $BYTES_NOTE${err:+; ERROR: $err}" "${times[@]}"
    seq_row "$name" "${runs}$SEQ_NOTE${err:+; ERROR: $err}" "${stimes[@]}"
  else
    rand_text "$name" "$(cells best =FAILED notes "=$err")"
    seq_text "$name" "$(cells best =FAILED notes "=$err")"
  fi
}

# archivemount keeps no index, so every mount is cold; it re-reads the archive up to a file to
# serve it, so the random-file row runs once, for at most PEER_BUDGET seconds.
archivemount_rows() {
  local na
  if ! command -v archivemount > /dev/null; then
    na="n/a (archivemount not installed: apt-get install archivemount)"
    add_row "archivemount mount + ls -R" "$na" "" "" ""
    rand_text archivemount "$(cells best "=$na")"
    seq_text archivemount "$(cells best "=$na")"
    return
  fi
  local ver
  ver=$(archivemount --version 2>&1 | head -n1 || true)
  section "$ver"
  new_mnt
  MOUNTS+=("archivemount|$MNT")
  drop_caches
  local t0 t hwm
  t0=$EPOCHREALTIME
  if ! timeout -k 5 "$LIMIT" archivemount -o readonly "$TGZ" "$MNT" > "$RUN/archivemount.log" 2>&1; then
    add_row "archivemount mount + ls -R" "FAILED" "" "" "$(head -n1 "$RUN/archivemount.log" | cut -c1-200)"
    unmount_all
    rand_text archivemount "$(cells best "=n/a (mount failed)")"
    seq_text archivemount "$(cells best "=n/a (mount failed)")"
    return
  fi
  # Its listing may have errors of its own (a peer's bug is a note, not a stop).
  local lsnote=""
  if ! timeout -k 5 "$LIMIT" ls -R "$MNT" > /dev/null 2> "$RUN/ls.err"; then
    lsnote="; ls -R: $(grep -c . "$RUN/ls.err") errors, e.g. $(head -n1 "$RUN/ls.err" | sed "s|$MNT/||" | cut -c1-160)"
  fi
  t=$(since "$t0")
  DPID=$(pid_with_arg "$MNT") || DPID=""
  hwm=$(vm_hwm "$DPID")
  time_row "archivemount mount + ls -R (1 run: no index kept)" "$GZ_REF" "gzip -dc" "=$ver; peak RSS $(fmt_size "$hwm")$lsnote" -- "$t"
  # Random files within the budget.
  drop_caches
  local n=0 f elapsed ok=1
  : > "$RUN/read.err"
  t0=$EPOCHREALTIME
  while IFS= read -r f; do
    timeout -k 5 "$LIMIT" cat -- "$MNT/$f" > /dev/null 2>> "$RUN/read.err" || ok=0
    n=$((n + 1))
    elapsed=$(since "$t0")
    awk -v e="$elapsed" -v b="$PEER_BUDGET" 'BEGIN { exit !(e >= b) }' && break
  done < "$RANDLIST"
  # Re-reading is as slow as reading: check 50 files, and not the largest (minutes for 70 MB).
  check_bytes archivemount "$MNT" "$((n < 50 ? n : 50))" skip-largest
  # One run, within the budget: the rate of the files it read, no median.
  record type=row group=rand "label=$(rand_label archivemount)" kind=rate "count:=$n" "ref=$RAND_REF" "ref_name=local fs" \
    "values:=$(nums "$elapsed")" "cells:=$(cells median notes "=1 run: $n files in $(fmt_time "$elapsed") (budget ${PEER_BUDGET} s); $BYTES_NOTE$( ((ok)) || echo '; read errors')")"
  # The largest file, for at most PEER_BUDGET seconds (dd prints what it copied when interrupted).
  drop_caches
  local bytes
  t0=$EPOCHREALTIME
  timeout -s INT -k 30 "$PEER_BUDGET" dd if="$MNT/$LARGEST" of=/dev/null bs=1M 2> "$RUN/dd.err" || true
  t=$(since "$t0")
  bytes=$(awk '/bytes/ { print $1; exit }' "$RUN/dd.err")
  if [[ -n $bytes ]]; then
    record type=row group=seq "label=$(seq_label archivemount)" kind=mbps "bytes:=$bytes" "ref=$SEQ_REF" "ref_name=local fs" \
      "values:=$(nums "$t")" "cells:=$(cells median notes "=1 run: $(fmt_size "$bytes") of $(fmt_size "$LARGEST_SIZE") in $(fmt_time "$t") (budget $PEER_BUDGET s)")"
  else
    seq_text archivemount "$(cells best =FAILED notes "=$(head -n1 "$RUN/dd.err")")"
  fi
  unmount_all
}

# Mount of a big archive: time of mount + ls -l blobs/sha256, and what the daemon read for it.
big_mount_rows() {
  local size i t0 times=() rb=() rc=() err="" cache
  size=$(stat -c %s "$BIG")
  for ((i = 1; i <= RUNS; i++)); do
    cache=$(mktemp -d "$RUN/cache.XXXXXX")
    new_mnt
    drop_caches
    t0=$EPOCHREALTIME
    if ! imgfs_mount "$BIG" "$MNT" "$cache" || ! ls -l "$MNT/blobs/sha256" > "$RUN/blobs.ls"; then
      err="mount or ls failed: ${MOUNT_ERR:-}"
      unmount_all
      break
    fi
    times+=("$(since "$t0")")
    rb+=("$(io_field "$DPID" read_bytes)")
    rc+=("$(io_field "$DPID" rchar)")
    unmount_all
    rm -rf "$cache"
  done
  local label
  label="imgfs mount + ls -l blobs/sha256 of a $(fmt_size "$size") docker-archive (cold)"
  if [[ -n $err ]]; then
    fail_row "$label" "$err"
    return
  fi
  time_row "$label" "" "" "=layers: $(tar -tvf "$BIG" | awk '$1 ~ /^-/ && $NF ~ /[.]tar$/' | wc -l); ls -l lists $(grep -c "^-" "$RUN/blobs.ls") blobs" -- "${times[@]}"
  ROW_SERIES=$(series rb "${rb[*]}" rc "${rc[*]}") xrow "bytes the imgfs daemon read for that mount (read_bytes)" \
    "$(cells best "@rb min size" median "@rb med size" ratio "@rb med $size pct" "= of the archive" \
      notes "=read() calls returned " "@rc med size" "= (rchar); read_bytes includes kernel readahead")"
}

problems_from_log() {
  [[ -s $LOG ]] || return 0
  local n
  n=$(grep -cE 'ERROR|WARN|panicked' "$LOG" || true)
  if ((n > 0)); then
    problem "imgfs log has $n warning/error lines, first: $(grep -m1 -E 'ERROR|WARN|panicked' "$LOG" | cut -c1-250)"
  fi
}

# print_report: the report from $RUN/rows.jsonl (scripts/bench_report.py), into report.md and, with
# DOCS, appended to docs/benchmarks.md.
print_report() {
  local os cpu mem fs lines=()
  os=$(. /etc/os-release && echo "$PRETTY_NAME")
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
  fs=$(findmnt -n -o FSTYPE -T "$WORKDIR" || echo "?")
  [[ ${#REPORT_LINES[@]} -gt 0 ]] && lines=("${REPORT_LINES[@]}")
  record type=meta style=bench "date=$(date -u '+%Y-%m-%d %H:%M UTC')" "title=${REPORT_TITLE:-}" "rev=$REV" \
    "command=$CMDLINE" "took_seconds:=$(since "$T_START")" "build_seconds:=${BUILD_TIME:-0}" \
    "machine=$(nproc) cores ($cpu), $mem RAM, kernel $(uname -r), $os; work dir $WORKDIR on $fs; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end" \
    "remark=${REMARK:-}" "lines:=$(jq -nc '$ARGS.positional' --args "${lines[@]}")" "runs=$RUNS" "tree_by=${TREE_BY:-}"
  python3 "$REPORT_PY" report "$RUN/rows.jsonl" > "$RUN/report.md" || die "bench_report.py failed on $RUN/rows.jsonl"
  cat "$RUN/report.md"
  if ((DOCS)); then
    local doc=$REPO/docs/benchmarks.md
    [[ -e $doc ]] || printf '# Benchmarks\n\nResults of `scripts/bench`, newest last.\n\n' > "$doc"
    cat "$RUN/report.md" >> "$doc"
    log "appended to $doc"
  fi
  log "report and logs: $RUN"
}
