# bash completion for ipvlan(8), the ipvlan-rs daemon and CLI.
# Install: cp deploy/completion/ipvlan.bash /usr/share/bash-completion/completions/ipvlan
# (or /etc/bash_completion.d/ipvlan), or source it from ~/.bashrc.
#
# Completes objects and commands (link add|delete|set|show|help, address add|del, metrics,
# monitor drops, daemon, demo, matrix, help), global options, the keywords of each command and
# their values (type ipvlan|ipvtap, mode l2|l3|l3s, bridge|private|vepa, ipvtap's user and
# group, spoofchk/router on|off, backend veth|tap, --datapath),
# master devices (`link DEVICE`: the interfaces in /sys/class/net) and the daemon's slaves
# (for delete, set, show and monitor drops dev: asked from the daemon with `ipvlan link show`,
# through --socket or $IPVLAN_SOCKET as typed; nothing when it cannot be reached).
# Needs only bash; tested by crates/ipvlan/tests/completion.rs.

# Whether word $1 abbreviates keyword $2 (iproute2's matches()).
_ipvlan_is() {
    [[ -n $1 && $2 == "$1"* ]]
}

# The daemon's slaves, one per line: the NAME of each "IDX: NAME@MASTER: ..." line of
# `ipvlan link show`. Silent and empty when the daemon is not reachable (or we are not root).
_ipvlan_slaves() {
    local -a cmd=("${COMP_WORDS[0]}")
    [[ -n $_ipvlan_socket ]] && cmd+=(--socket "$_ipvlan_socket")
    local t=()
    command -v timeout >/dev/null 2>&1 && t=(timeout 2)
    "${t[@]}" "${cmd[@]}" link show 2>/dev/null |
        while read -r idx name _; do
            [[ $idx == [0-9]*: ]] || continue
            name=${name%%@*}
            printf '%s\n' "${name%:}"
        done
}

# The network interfaces here (masters for `link DEVICE`), but those the daemon makes itself
# and refuses as masters: veth host ends (ipvh<master ifindex>-<id>) and l3s sinks
# (ipvls<ifindex>).
_ipvlan_ifaces() {
    local d n
    for d in /sys/class/net/*; do
        [[ -e $d ]] || continue
        n=${d##*/}
        [[ $n =~ ^ipvh[0-9]+-[0-9]+$ || $n =~ ^ipvls[0-9]+$ ]] && continue
        printf '%s\n' "$n"
    done
}

_ipvlan_reply() {
    local IFS=$'\n'
    # shellcheck disable=SC2207
    COMPREPLY=($(compgen -W "$1" -- "$cur"))
}

_ipvlan_files() {
    local IFS=$'\n'
    # shellcheck disable=SC2207
    COMPREPLY=($(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
}

_ipvlan_dirs() {
    local IFS=$'\n'
    # shellcheck disable=SC2207
    COMPREPLY=($(compgen -d -- "$cur"))
    compopt -o filenames 2>/dev/null
}

# The words after `type ipvlan`: mode and one flag.
_ipvlan_type_args() {
    # $@: the words after "ipvlan" (type's arguments so far)
    local w flag=
    if [[ $prev == mode ]]; then
        _ipvlan_reply $'l2\nl3\nl3s'
        return
    fi
    for w in "$@"; do
        case $w in bridge | private | vepa) flag=1 ;; esac
    done
    # `type ipvtap` of `link add`: who may open the TAP.
    local owner=
    if [[ -n $_ipvlan_ipvtap ]]; then
        [[ $prev == user || $prev == group ]] && return
        owner=$'\nuser\ngroup'
    fi
    if [[ -n $flag ]]; then
        _ipvlan_reply $'mode\nhelp'"$owner"
    else
        _ipvlan_reply $'mode\nbridge\nprivate\nvepa\nhelp'"$owner"
    fi
}

_ipvlan_link() {
    # $1: the command word; the words after it are words[cmd+1 .. cword-1].
    local command=$1
    shift
    local -a args=("$@")
    local i seen_type=-1
    for i in "${!args[@]}"; do
        [[ ${args[i]} == type ]] && seen_type=$i
    done
    # After `type` (add and set): `ipvlan` or `ipvtap`, then its mode and flag (and an
    # ipvtap's user and group, for add).
    if ((seen_type >= 0)) && { _ipvlan_is "$command" add || _ipvlan_is "$command" set; }; then
        if ((${#args[@]} == seen_type + 1)); then
            _ipvlan_reply $'ipvlan\nipvtap'
        else
            local _ipvlan_ipvtap=
            [[ ${args[seen_type + 1]} == ipvtap ]] && _ipvlan_is "$command" add && _ipvlan_ipvtap=1
            _ipvlan_type_args "${args[@]:seen_type+2}"
        fi
        return
    fi
    if _ipvlan_is "$command" add; then
        case $prev in
        link) _ipvlan_reply "$(_ipvlan_ifaces)" ;;
        spoofchk | hostreach) _ipvlan_reply $'on\noff' ;;
        backend) _ipvlan_reply $'veth\ntap' ;;
        name | dev | mtu | address) COMPREPLY=() ;;
        *)
            local -a left=()
            local k
            for k in link name mtu spoofchk backend hostreach type; do
                [[ " ${args[*]} " == *" $k "* ]] || left+=("$k")
            done
            _ipvlan_reply "$(printf '%s\n' "${left[@]}" help)"
            ;;
        esac
    elif _ipvlan_is "$command" delete || [[ $command == del ]]; then
        if ((${#args[@]} == 0)); then
            _ipvlan_reply "$(_ipvlan_slaves; echo dev; echo help)"
        elif ((${#args[@]} == 1)) && [[ ${args[0]} == dev ]]; then
            _ipvlan_reply "$(_ipvlan_slaves)"
        fi
    elif _ipvlan_is "$command" set; then
        if ((${#args[@]} == 0)); then
            _ipvlan_reply "$(_ipvlan_slaves; echo dev; echo help)"
            return
        fi
        if ((${#args[@]} == 1)) && [[ ${args[0]} == dev ]]; then
            _ipvlan_reply "$(_ipvlan_slaves)"
            return
        fi
        case $prev in
        spoofchk | router | hostreach) _ipvlan_reply $'on\noff' ;;
        *) _ipvlan_reply $'spoofchk\nrouter\nhostreach\ntype' ;;
        esac
    elif _ipvlan_is "$command" show || _ipvlan_is "$command" list || [[ $command == ls ]]; then
        if ((${#args[@]} == 0)); then
            _ipvlan_reply "$(_ipvlan_slaves; echo dev; echo help)"
        elif ((${#args[@]} == 1)) && [[ ${args[0]} == dev ]]; then
            _ipvlan_reply "$(_ipvlan_slaves)"
        fi
    fi
}

_ipvlan() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    local _ipvlan_socket=
    COMPREPLY=()

    # Global options, then the object.
    local i=1 object=-1
    while ((i < COMP_CWORD)); do
        local w=${COMP_WORDS[i]}
        if [[ $w == --socket ]]; then
            _ipvlan_socket=${COMP_WORDS[i + 1]}
            ((i += 2))
            continue
        elif [[ $w == -* ]]; then
            ((i += 1))
            continue
        fi
        object=$i
        break
    done

    if ((object < 0)); then
        if [[ $prev == --socket ]]; then
            _ipvlan_files
        elif [[ $cur == -* ]]; then
            _ipvlan_reply $'-d\n-details\n-s\n-statistics\n-j\n-json\n-p\n-pretty\n-br\n-brief\n--socket\n-V\n-Version\n-h\n-help'
        else
            _ipvlan_reply $'link\naddress\nmetrics\nmonitor\ndaemon\ndemo\nmatrix\nhelp'
        fi
        return 0
    fi

    local obj=${COMP_WORDS[object]}
    local -a rest=("${COMP_WORDS[@]:object+1:COMP_CWORD-object-1}")
    if _ipvlan_is "$obj" link; then
        if ((${#rest[@]} == 0)); then
            _ipvlan_reply $'add\ndelete\nset\nshow\nhelp'
        else
            _ipvlan_link "${rest[0]}" "${rest[@]:1}"
        fi
    elif _ipvlan_is "$obj" address; then
        # address { add | del } ADDR[/LEN] dev NAME: an ipvtap slave's guest's addresses.
        if ((${#rest[@]} == 0)); then
            _ipvlan_reply $'add\ndel\nhelp'
        elif [[ $prev == dev ]]; then
            _ipvlan_reply "$(_ipvlan_slaves)"
        elif ((${#rest[@]} >= 2)) && [[ " ${rest[*]} " != *" dev "* ]]; then
            _ipvlan_reply dev
        fi
    elif [[ $obj == monitor ]]; then
        if ((${#rest[@]} == 0)); then
            _ipvlan_reply $'drops\nhelp'
        elif [[ ${rest[0]} == drops ]]; then
            case $prev in
            dev) _ipvlan_reply "$(_ipvlan_slaves; _ipvlan_ifaces)" ;;
            --pcap) _ipvlan_files ;;
            *) _ipvlan_reply $'dev\n--pcap\nhelp' ;;
            esac
        fi
    elif [[ $obj == daemon ]]; then
        case $prev in
        --datapath) _ipvlan_reply $'auto\nbpf\nbpf-tc\nuser' ;;
        --socket) _ipvlan_files ;;
        --state-dir | --bpffs) _ipvlan_dirs ;;
        --metrics-listen) COMPREPLY=() ;;
        *) _ipvlan_reply $'--socket\n--state-dir\n--datapath\n--bpffs\n--metrics-listen\nhelp' ;;
        esac
    elif [[ $obj == metrics ]]; then
        _ipvlan_reply $'--openmetrics\nhelp'
    elif [[ $obj == demo || $obj == matrix ]]; then
        ((${#rest[@]} == 0)) && _ipvlan_reply help
    fi
    return 0
}

complete -F _ipvlan ipvlan
