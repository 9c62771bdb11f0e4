# bash completion for ias-admin.
#   source scripts/completion/ias-admin.bash
# or install it as /etc/bash_completion.d/ias-admin (or
# ~/.local/share/bash-completion/completions/ias-admin).
# The candidates come from the binary itself (`ias-admin __complete WORDS...`),
# so commands and flags never drift from what the parser accepts.
_ias_admin() {
    local cur prev
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    case $prev in
    -f | --file | --requests)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    --base-url)
        mapfile -t COMPREPLY < <(compgen -W "${IAS_BASE_URL:-http://127.0.0.1:8080}" -- "$cur")
        return
        ;;
    esac
    local words
    words=$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null) || return
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}
complete -F _ias_admin ias-admin
