# Shell functions the experiment scripts share; sourced, not run:
#   source "$(dirname "${BASH_SOURCE[0]}")/train_once.sh"
#
# train_once ROOT OPTIONS...: fer.train with OPTIONS, into the root folder ROOT, with
# --no-test (PrivateTest is kept for judging a release) and its summary in ROOT/summary.json. A
# finished run (ROOT/summary.json there) is not trained again; one cut short (a last.ckpt under
# ROOT/lightning_logs) continues where it stopped, with --ckpt-path last.
train_once() {
    local root=$1
    shift
    [ -f "$root/summary.json" ] && return 0
    local resume=()
    compgen -G "$root/lightning_logs/version_*/checkpoints/last.ckpt" > /dev/null && resume=(--ckpt-path last)
    # (${a[@]+"${a[@]}"}: bash before 4.4, such as macOS's 3.2, calls an empty array unbound)
    python -m fer.train --default-root-dir "$root" --no-test --json "$root/summary.json" \
        "$@" ${resume[@]+"${resume[@]}"}
}

# run_folder ROOT: the version folder the run of ROOT finished in, as its summary.json records it
# (not always version_0: a start stopped before its first checkpoint leaves a version_0 behind, and
# the run made again goes on in version_1)
run_folder() {
    python -c 'import json, sys; print(json.load(open(sys.argv[1]))["log_dir"])' "$1/summary.json"
}

# from_git COMMIT DIR: the checkpoints/ folder of git commit COMMIT (the model shipped then) in
# DIR, taken out of git when DIR holds no model.json; extracted beside DIR and renamed into place,
# so an extraction cut short leaves no DIR that looks complete. Needs a clone with that history.
from_git() {
    local commit=$1 dir=$2
    [ -f "$dir/model.json" ] && return 0
    local part=$dir.partial
    rm -rf -- "$part"
    mkdir -p "$part"
    git archive "$commit" checkpoints | tar -x --strip-components 1 -C "$part"
    rm -rf -- "$dir"
    mv -- "$part" "$dir"
}
