# shellcheck shell=bash
# Profiles of perf/pktgen/run: small `key = value` files (profiles/*.conf). Whole-line `#`
# comments only; a value may be wrapped in double quotes. Unknown keys are errors, so a typo
# never silently falls back to a default. Sourced by perf/pktgen/run.

# Every key, with its default ("" = none).
declare -gA PROFILE_DEFAULTS=(
    [description]=""
    [generator]=""        # pktgen | testpmd | trafgen | perf (required)
    [protocol]="udp"      # udp | tcp-syn (only SYNs: trafgen) | tcp (each flow a SYN, then ACKs: perf)
    [vip]="192.0.2.10"    # destination address: the lab's VIP
    [port]="53"           # destination port: 53/udp is the lab's `dns` VIP, 9000/tcp its `bulk` VIP
    [src_net]="198.51.100.0/24" # client sources are drawn from this prefix (random per packet)
    [sport_min]="1024"    # source ports, random in [sport_min, sport_max]
    [sport_max]="65535"
    [frame_size]="60"     # Ethernet frame without FCS: 60 is 64 bytes on the wire
    [rate_pps]="0"        # packets per second over all threads; 0 = flat out
    [duration]="10"       # seconds of sending
    [threads]="1"         # sending threads: pktgen kpktgend_N, trafgen --cpus, testpmd lcores
    [flows]="1000"        # perf: number of flows (the others draw sources at random)
    [clone_skb]="0"       # pktgen: sends of each skb before a new one (0: every packet new)
    [burst]="1"           # pktgen: packets per xmit_more burst
    [max_loss_pct]=""     # when set, the run fails if more than this share is lost
)
declare -gA PROFILE=()

# Which protocols each generator can produce: the kernel's pktgen and testpmd's txonly mode
# build UDP only.
generator_protocols() {
    case $1 in
    pktgen | testpmd) echo udp ;;
    trafgen) echo "udp tcp-syn" ;;
    perf) echo "udp tcp" ;;
    *) return 1 ;;
    esac
}

profile_die() {
    printf 'perf/pktgen/run: %s\n' "$*" >&2
    exit 2
}

# profile_path NAME|FILE: a profile given by name (profiles/NAME.conf) or by path.
profile_path() {
    if [ -f "$1" ]; then
        echo "$1"
    elif [ -f "$PKTGEN_DIR/profiles/$1.conf" ]; then
        echo "$PKTGEN_DIR/profiles/$1.conf"
    else
        profile_die "no profile '$1' (perf/pktgen/run --list)"
    fi
}

# load_kv FILE: reads key = value lines into PROFILE (profiles, and a results directory's
# run.conf, which has the same form).
load_kv() {
    local file=$1 n=0 line key value
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line=${line#"${line%%[![:space:]]*}"}
        case $line in "" | "#"*) continue ;; esac
        [[ $line == *=* ]] || profile_die "$file:$n: expected 'key = value', got '$line'"
        key=${line%%=*}
        key=${key%"${key##*[![:space:]]}"}
        value=${line#*=}
        value=${value#"${value%%[![:space:]]*}"}
        value=${value%"${value##*[![:space:]]}"}
        [[ $value == \"*\" ]] && value=${value:1:-1}
        [ -n "${PROFILE_DEFAULTS[$key]+set}" ] || profile_die "$file:$n: unknown key '$key' (known: ${!PROFILE_DEFAULTS[*]})"
        PROFILE[$key]=$value
    done <"$file"
}

load_profile() {
    local key
    for key in "${!PROFILE_DEFAULTS[@]}"; do PROFILE[$key]=${PROFILE_DEFAULTS[$key]}; done
    load_kv "$1"
}

ip_to_int() {
    local IFS=. a b c d
    read -r a b c d <<<"$1"
    echo $(((a << 24) | (b << 16) | (c << 8) | d))
}
int_to_ip() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }
is_ipv4() {
    [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
    local i
    for i in 1 2 3 4; do [ "${BASH_REMATCH[$i]}" -le 255 ] || return 1; done
}

# cidr_hosts PREFIX: "FIRST LAST", the usable addresses (a /31 or /32 uses all of them).
cidr_hosts() {
    local addr=${1%/*} len=${1#*/}
    is_ipv4 "$addr" && [[ $len =~ ^[0-9]+$ ]] && [ "$len" -le 32 ] || return 1
    local mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
    local base=$(($(ip_to_int "$addr") & mask))
    local last=$((base | (~mask & 0xffffffff)))
    if [ "$len" -lt 31 ]; then
        base=$((base + 1))
        last=$((last - 1))
    fi
    echo "$(int_to_ip "$base") $(int_to_ip "$last")"
}

is_uint() { [[ $1 =~ ^(0|[1-9][0-9]*)$ ]]; }
is_number() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# validate_profile NAME: the values make sense together; derives SRC_MIN and SRC_MAX.
validate_profile() {
    local p=$1 key
    for key in port sport_min sport_max frame_size rate_pps threads flows clone_skb burst; do
        is_uint "${PROFILE[$key]}" || profile_die "$p: $key must be a whole number (got '${PROFILE[$key]}')"
    done
    if ! is_number "${PROFILE[duration]}" || [[ ${PROFILE[duration]} =~ ^0*(\.0*)?$ ]]; then
        profile_die "$p: duration must be a positive number of seconds (got '${PROFILE[duration]}')"
    fi
    [ -z "${PROFILE[max_loss_pct]}" ] || is_number "${PROFILE[max_loss_pct]}" ||
        profile_die "$p: max_loss_pct must be a number (got '${PROFILE[max_loss_pct]}')"
    local protocols
    protocols=$(generator_protocols "${PROFILE[generator]}") ||
        profile_die "$p: generator must be pktgen, testpmd, trafgen or perf (got '${PROFILE[generator]}')"
    [[ " $protocols " == *" ${PROFILE[protocol]} "* ]] ||
        profile_die "$p: generator ${PROFILE[generator]} sends ${protocols// / or }, not '${PROFILE[protocol]}'"
    is_ipv4 "${PROFILE[vip]}" || profile_die "$p: vip must be an IPv4 address (got '${PROFILE[vip]}')"
    [[ ${PROFILE[port]} -ge 1 && ${PROFILE[port]} -le 65535 ]] || profile_die "$p: port must be 1..65535"
    [[ ${PROFILE[sport_min]} -ge 1 && ${PROFILE[sport_min]} -le ${PROFILE[sport_max]} &&
        ${PROFILE[sport_max]} -le 65535 ]] || profile_die "$p: need 1 <= sport_min <= sport_max <= 65535"
    # The MUX adds a 20-byte outer header and the lab links have a 1500-byte MTU: a frame of
    # more than 1494 bytes would be answered with "fragmentation needed", not forwarded.
    [[ ${PROFILE[frame_size]} -ge 60 && ${PROFILE[frame_size]} -le 1494 ]] ||
        profile_die "$p: frame_size must be 60..1494 (the encapsulated packet must fit the 1500-byte MTU)"
    [ "${PROFILE[threads]}" -ge 1 ] || profile_die "$p: threads must be at least 1"
    [ "${PROFILE[flows]}" -ge 1 ] || profile_die "$p: flows must be at least 1"
    [ "${PROFILE[burst]}" -ge 1 ] || profile_die "$p: burst must be at least 1"
    local range
    range=$(cidr_hosts "${PROFILE[src_net]}") || profile_die "$p: src_net must be an IPv4 prefix (got '${PROFILE[src_net]}')"
    read -r SRC_MIN SRC_MAX <<<"$range"
    case ${PROFILE[generator]} in
    testpmd)
        # txonly has no pacing: it sends as fast as the port takes packets.
        [ "${PROFILE[rate_pps]}" = 0 ] || profile_die "$p: testpmd's txonly mode cannot pace; use rate_pps = 0 or --generator pktgen"
        ;;
    trafgen)
        # trafgen randomises whole bytes of a field: the last byte of the source address.
        [ "${SRC_MIN%.*}" = "${SRC_MAX%.*}" ] || profile_die "$p: trafgen varies the last byte of the source only: src_net must be a /24 or longer"
        ;;
    esac
}
