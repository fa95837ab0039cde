# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/demo.sh: a wall clock per stage, printed as a table when
# the script ends, however it ends (the EXIT trap), so a CI log shows where the time went and
# which stage a failure ended.
#
#   stage_begin NAME    starts a stage (and ends the one before)
#   stage_end           ends the current stage
#   stage_report WHO    prints the table; call it from an EXIT trap

stage_names_=() stage_secs_=() stage_current_="" stage_t0_=0

stage_begin() {
  [[ -z $stage_current_ ]] || stage_end
  stage_current_=$1 stage_t0_=$SECONDS
  echo "== [$(date +%H:%M:%S)] $1"
}

stage_end() {
  [[ -n $stage_current_ ]] || return 0
  stage_names_+=("$stage_current_") stage_secs_+=($((SECONDS - stage_t0_)))
  stage_current_=""
}

stage_report() {
  local status=$? who=$1 i
  if [[ -n $stage_current_ ]]; then
    stage_current_="$stage_current_ (unfinished)"
    stage_end
  fi
  echo "== $who: stage times"
  for i in "${!stage_names_[@]}"; do
    printf '   %6d s  %s\n' "${stage_secs_[$i]}" "${stage_names_[$i]}"
  done
  printf '   %6d s  total\n' "$SECONDS"
  return "$status"
}
