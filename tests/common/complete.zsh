# zsh -f complete.zsh FNDIR OUT LINE...
# Types each LINE, then TAB, into a fresh interactive zsh (driven through zsh's own
# pseudo-terminal module) whose fpath starts with FNDIR, and appends to OUT each
# candidate the completion system offered, as "LINE|candidate".
zmodload zsh/zpty || exit 3
fndir=$1 out=$2
shift 2
: >| $out
for line in "$@"; do
  zpty z zsh -f -i || exit 4
  zpty -w z "fpath=(${(q)fndir} \$fpath); autoload -Uz compinit; compinit -u -D"
  zpty -w z "setopt no_beep no_auto_list; bindkey '^I' complete-word"
  zpty -w z "__out=${(q)out} __line=${(q)line}"
  # Every compadd call that adds candidates also hands them, filtered by what is
  # typed, to -O; calls that only filter or test (-O, -A, -D) are passed through.
  zpty -w z 'compadd() {
    if [[ " ${@[1,(i)(-|--)]} " == *\ -[OAD]\ * ]]; then builtin compadd "$@"; return; fi
    local -a __hits
    builtin compadd -O __hits "$@"
    (( $#__hits )) && print -rl -- "${__hits[@]/#/$__line|}" >> $__out
    builtin compadd "$@"
  }'
  # Said on the terminal when the completion is over; quoted so that the echo of
  # this very line does not read as it.
  zpty -w z 'comppostfuncs=(__over); __over() { print -n "<<"over">>" > /dev/tty }'
  zpty -w -n z "$line"$'\t'
  zpty -r z __seen '*<<over>>*' || exit 5
  zpty -d z
done
