# Completes a command line in an interactive zsh on a pseudo-terminal and prints the candidates
# compadd was given, one per line: zsh zsh_complete.zsh FUNCTION_DIR "command line".
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1=''; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
# The marker is written in two pieces: the terminal may echo this line, which must not match.
zpty -w z "compadd () { builtin compadd -O __hits \"\$@\"; (( \$#__hits )) && print -l -- \"H\"\"IT:\"\${^__hits} }"
zpty -w z "zstyle ':completion:*' list-prompt ''"
zpty -w z "$2"$'\t'
local all="" chunk
local end=$(( SECONDS + 3 ))
while (( SECONDS < end )); do
  if zpty -r -t z chunk; then all+="$chunk"; else sleep 0.1; fi
done
print -r -- "$all" | tr -d '\r' | grep -o 'HIT:[^[:space:]]*' | sed 's/^HIT://' | sort -u
zpty -d z
