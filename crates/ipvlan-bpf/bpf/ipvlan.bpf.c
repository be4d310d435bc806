// SPDX-License-Identifier: MIT OR Apache-2.0
//
// ipvlan-rs eBPF fast path: Linux IPVLAN switching as two TC/tcx classifier programs.
//
//   from_slave   on the ingress of every slave's host end (= what the slave transmits);
//                the decision of ipvlan_core::decide_tx + Port::handle_tx accounting.
//   from_master  on the master's ingress (= what the wire brings);
//                ipvlan_core::decide_rx + Port::handle_rx accounting.
//
// Multicast fan-out (ipvlan_core::multicast_fanout) is synchronous: one bpf_clone_redirect per
// receiving slave, bounded by FANOUT_MAX and by a per-CPU token bucket standing in for the
// kernel's 1000-frame backlog (R-MC-1).
//
// The layout of every map value below is mirrored in crates/ipvlan-bpf/src/maps.rs; change both.
// Build: scripts/build-bpf (checked-in object, byte-identical rebuilds).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FANOUT_MAX 256       // slaves per port (fan-out list length, per-slave map sizes)
#define ADDR_MAX 4096        // addresses per port
#define MAX_EXT_HEADERS 8    // IPv6 extension headers walked before ICMPv6 (guard only)
#define MTU_SLACK 18         // Ethernet header + one VLAN tag (ipvlan_core::port::MTU_SLACK)
#define TCX_NEXT_ (-1)       // TCX_NEXT == TC_ACT_UNSPEC: let later programs / the stack run
#define TOHOST_MARK 0x1b7a0001 // marks an l2 ToHost frame re-injected on the master's ingress

// ---- configuration -------------------------------------------------------------------------

enum mode { MODE_L2 = 0, MODE_L3 = 1, MODE_L3S = 2 };
enum flag { FLAG_BRIDGE = 0, FLAG_PRIVATE = 1, FLAG_VEPA = 2 };
enum route { ROUTE_STACK = 0, ROUTE_FIB = 1 };

struct port_cfg {
	__u32 master_ifindex; // 0: not configured, both programs pass everything
	__u32 master_mtu;
	__u8 master_mac[6];
	__u8 mode;
	__u8 flag;
	__u8 route_v4;
	__u8 route_v6;
	__u8 trace;
	__u8 has_local;       // some slave is in the master's namespace: check for routing loops
	__u32 mc_burst;       // token bucket size, frames per CPU; 0 = unbounded
	__u32 mc_rate;        // refill, frames per second per CPU
};

#define SLAVE_UP (1u << 0)
#define SLAVE_SPOOFCHK (1u << 1)
#define SLAVE_ROUTER (1u << 2)
#define SLAVE_SAME_NS (1u << 3)
#define SLAVE_HOST (1u << 4) // hostreach: the port's host slave (Slave::is_host)
// An ipvtap's guest: its Ethernet source must be the master's, and it is delivered by a plain
// redirect to its TAP's egress (no peer), though not in the master's namespace.
#define SLAVE_MAC_GUARD (1u << 5)

struct slave {
	__u32 host_ifindex;
	__u32 mtu;
	__u32 flags;
};

struct addr_key {
	__u8 family; // 4 or 6
	__u8 pad[3];
	__u8 addr[16]; // IPv4 in the first 4 bytes, network order
};

// ---- counters (mirror ipvlan_core::counters) --------------------------------------------------

#define NREASONS 17
enum reason {
	R_RUNT = 0,
	R_PRIVATE_UNICAST = 1,
	R_L3_MULTICAST = 2,
	R_L3_NOT_IP = 3,
	R_MALFORMED_IP = 4,
	R_MTU_EXCEEDED = 5,
	R_RECEIVER_DOWN = 6,
	R_BACKLOG_FULL = 7,
	R_PAUSE_FRAME = 8,
	R_FOREIGN_VLAN = 9,
	R_SPOOFED_SOURCE = 12,
	R_ROUTER_MESSAGE = 13,
	R_ROUTING_LOOP = 15,
	R_FOREIGN_SOURCE_MAC = 16,
};

struct slave_ctr {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 rx_multicast;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 tx_errors;
	__u64 tx_dropped[NREASONS];
	__u64 rx_dropped[NREASONS];
	__u64 rx_dhcp_steered; // DHCPv4 replies delivered by their xid (dhcp_xids)
};

struct port_ctr {
	__u64 rx_claimed;
	__u64 rx_passed;
	__u64 rx_multicast_queued;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 to_host_stack;
	__u64 dropped[NREASONS];
	// BPF-only diagnostics (not in PortCounters)
	__u64 clone_failed;   // bpf_clone_redirect refused a fan-out copy
	__u64 fib_fallback;   // route method FIB found no forwarding route: handed to the stack
	__u64 fanout_cut;     // a fan-out stopped at FANOUT_MAX
	__u64 dhcp_xid_taken; // a DHCP request took another slave's live xid (PortCounters)
};

// ---- trace (last decision per CPU) ---------------------------------------------------------

enum verdict {
	V_NONE = 0,
	V_DELIVER = 1,
	V_TRANSMIT = 2,
	V_TO_HOST = 3,
	V_ROUTE = 4,
	V_MULTICAST = 5,   // from_slave: fanned out, then to the wire
	V_DROP = 6,
	V_PASS = 7,
	V_PASS_MULTICAST = 8, // from_master: passed, copies fanned out
	V_STEER = 9,          // from_master: a unicast DHCPv4 reply, to the slave of its xid
};
enum site { SITE_NONE = 0, SITE_SENDER = 1, SITE_RECEIVER = 2, SITE_MASTER = 3 };

#define COPY_DROPPED (1u << 16) // in trace.copies: the copy was refused (MTU), not delivered

struct trace {
	__u64 ts;          // bpf_ktime_get_ns when written (the newest over CPUs is the last frame)
	__u32 hook;        // 1 from_slave, 2 from_master
	__u32 verdict;     // enum verdict
	__u32 target;      // slave id (deliver, receiver drop)
	__u32 reason;      // enum reason (drop)
	__u32 site;        // enum site (drop)
	__u32 family;      // 4 / 6 (route)
	__u32 ncopies;
	__u32 pad;
	__u32 copies[FANOUT_MAX]; // slave id | COPY_DROPPED
};

// ---- maps ----------------------------------------------------------------------------------

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_cfg);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FANOUT_MAX);
	__type(key, __u32); // slave id
	__type(value, struct slave);
} slaves SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FANOUT_MAX);
	__type(key, __u32); // host-end ifindex
	__type(value, __u32); // slave id
} host_slave SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ADDR_MAX);
	__type(key, struct addr_key);
	__type(value, __u32); // slave id
} addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FANOUT_MAX);
	__type(key, __u32);
	__type(value, __u32); // slave id in creation order; 0 ends the list
} fanout SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, FANOUT_MAX);
	__type(key, __u32); // slave id
	__type(value, struct slave_ctr);
} slave_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_ctr);
} port_stats SEC(".maps");

struct bucket {
	__u64 tokens;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bucket);
} mc_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trace);
} trace SEC(".maps");

// l3/l3s egress handed to the master namespace recently, by fingerprint (the packet without its
// TTL / hop limit) -> when (ns): a packet that comes back through a slave in the master's own
// namespace within LOOP_WINDOW_NS was routed back to it (the kernel's nested-transmit limit
// stops such a loop; the userspace path's RecentPackets does the same). Only kept while the
// port has such a slave (config.has_local).
#define LOOP_WINDOW_NS 1000000000ull
#define ROUTED_MAX 4096

struct routed_key {
	__u8 family;
	__u8 proto;
	__u16 pad;
	__u32 id;        // IPv4 identification / IPv6 flow label
	__u8 src[16];
	__u8 dst[16];
	__u8 l4[8];      // the first bytes after the IP header (ports, ICMP id/seq, checksum)
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ROUTED_MAX);
	__type(key, struct routed_key);
	__type(value, __u64);
} routed SEC(".maps");

// DHCPv4 on a shared MAC (ipvlan_core::dhcp): the transaction id of each DHCP request a slave
// sends out (l2) -> that slave and when (ns); a reply from the wire with a live xid goes to it.
#define DHCP_XID_MAX 1024              // ipvlan_core::dhcp::XID_MAX
#define DHCP_XID_TTL_NS 60000000000ull // ipvlan_core::dhcp::XID_TTL_NS
#define DHCP_FIXED_LEN 240             // BOOTP fixed header + magic cookie

struct dhcp_xid {
	__u32 slave;
	__u32 pad;
	__u64 ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DHCP_XID_MAX);
	__type(key, __u32); // xid, as loaded from the wire (byte order irrelevant: only compared)
	__type(value, struct dhcp_xid);
} dhcp_xids SEC(".maps");

// The options of each slave's latest DHCP request (l2), for the daemon's warning about client
// identifiers (ipvlan_core::dhcp::ClientIdWatch): the daemon creates each slave's entry, the
// program fills it; `seq` is odd while it writes.
#define DHCP_SNAP 256

struct dhcp_req {
	__u64 seq;
	__u32 len;       // option bytes copied, at most DHCP_SNAP
	__u32 truncated; // more options followed
	__u8 opts[DHCP_SNAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FANOUT_MAX);
	__type(key, __u32); // slave id
	__type(value, struct dhcp_req);
} dhcp_reqs SEC(".maps");

// ---- drop monitor (`ipvlan monitor drops`, crates/ipvlan/src/monitor) ------------------------
// While mon_on[0] is non-zero (a watcher exists; the daemon sets it), each drop's first
// MON_SNAP bytes go to mon_ring, at most MON_RATE a second per CPU (mon_budget; the rest are
// counted in it as suppressed). While it is zero, a drop costs one array lookup.
#define MON_SNAP 128
#define MON_RATE 200
enum mon_dir { MON_RX = 0, MON_TX = 1, MON_PORT = 2 }; // crate::monitor::Direction

struct mon_event {
	__u64 ts;      // bpf_ktime_get_ns
	__u32 slave;   // the slave charged with the drop; 0: the port (master)
	__u32 len;     // skb->len
	__u8 dir;      // enum mon_dir
	__u8 reason;   // enum reason
	__u16 caplen;  // bytes of data that are the frame's
	__u32 pad;
	__u8 data[MON_SNAP];
};

struct mon_budget {
	__u64 second;     // bpf_ktime_get_ns / 1e9 of the current window
	__u64 used;       // copies made in it
	__u64 suppressed; // drops not copied (budget spent or ring full), ever
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} mon_on SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} mon_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mon_budget);
} mon_budget SEC(".maps");

// Copies a dropped frame to mon_ring within the budget. A global function: verified once.
__attribute__((noinline)) int mon_copy(struct __sk_buff *skb, __u32 slave, __u32 dir,
				       __u32 reason)
{
	__u32 zero = 0, caplen;
	struct mon_budget *b = bpf_map_lookup_elem(&mon_budget, &zero);
	struct mon_event *e;
	__u64 now = bpf_ktime_get_ns(), sec = now / 1000000000ull;

	if (!b)
		return 0;
	if (b->second != sec) {
		b->second = sec;
		b->used = 0;
	}
	if (b->used >= MON_RATE) {
		b->suppressed++;
		return 0;
	}
	e = bpf_ringbuf_reserve(&mon_ring, sizeof(*e), 0);
	if (!e) {
		b->suppressed++;
		return 0;
	}
	b->used++;
	e->ts = now;
	e->slave = slave;
	e->len = skb->len;
	e->dir = dir;
	e->reason = reason;
	e->pad = 0;
	caplen = skb->len;
	if (caplen > MON_SNAP)
		caplen = MON_SNAP;
	if (caplen == 0 || bpf_skb_load_bytes(skb, 0, e->data, caplen) < 0)
		caplen = 0;
	e->caplen = caplen;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// A drop of `skb` charged to `slave` (0: the port): copied only while someone watches.
static __always_inline void mon_drop(struct __sk_buff *skb, __u32 slave, __u32 dir, __u32 reason)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&mon_on, &zero);

	if (on && *on)
		mon_copy(skb, slave, dir, reason);
}

// ---- frame classification (ipvlan_core::classify) ------------------------------------------

enum l3 {
	L3_ARP = 1,
	L3_IPV4 = 2,
	L3_IPV6 = 3,
	L3_PAUSE = 4,
	L3_OTHER = 5,
	L3_MALFORMED_IP = 6,    // Malformed::Ipv4 / Ipv6
	L3_MALFORMED_OTHER = 7, // VlanTruncated, ArpTruncated, NdTruncated
};

struct pkt {
	__u32 len;       // frame length as the core counts it (an offloaded VLAN tag included)
	__u32 gso;
	__u8 dst[6];
	__u8 src[6];
	__u8 has_vlan;
	__u8 l3;
	__u8 has_dst;    // dst key present (keys_rx; keys_tx = none when has_vlan)
	__u8 has_src;
	__u16 vid;
	__u8 has_gsrc;   // guard source: ARP sender / IPv4 source / IPv6 source
	__u8 icmp;       // an unfragmented ICMPv6 upper layer was found
	__u8 icmp_kind;
	__u8 has_target; // ND target (NS/NA with >= 24 bytes)
	__u8 gsrc_unspec;
	__u8 pad;
	struct addr_key dkey;
	struct addr_key skey;
	struct addr_key gsrc;
	struct addr_key target;
};

static __always_inline int is_zero(const __u8 *a, int n)
{
	__u8 acc = 0;

	for (int i = 0; i < n; i++)
		acc |= a[i];
	return acc == 0;
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	__u8 acc = 0;

	for (int i = 0; i < 6; i++)
		acc |= a[i] ^ b[i];
	return acc == 0;
}

static __always_inline void set_v4(struct addr_key *k, const __u8 *a)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = 4;
	__builtin_memcpy(k->addr, a, 4);
}

// IPv6 upper layer and ICMPv6 type/ND target, as Ipv6Packet::upper_layer + Icmpv6Info::parse
// (etherparse's extension-header walk: hop-by-hop first only, then dest-opts/routing/fragment/
// auth; a malformed chain means no upper layer). `off`: the first byte after the fixed header,
// `end`: the payload's end (payload length, cut at the bytes present).
static __always_inline void ipv6_upper(struct __sk_buff *skb, struct pkt *p, __u32 off, __u32 end,
				       __u8 next)
{
	__u8 fragmented = 0;
	__u8 h[4];

	for (int i = 0; i < MAX_EXT_HEADERS; i++) {
		__u32 hl;

		if (next == 0 && i != 0)
			return; // hop-by-hop not at start: no upper layer
		if (next != 0 && next != 60 && next != 43 && next != 44 && next != 51)
			goto upper;
		if (next == 51) {
			if (off + 12 > end || bpf_skb_load_bytes(skb, off, h, 2) < 0)
				return;
			if (h[1] < 1)
				return;
			hl = ((__u32)h[1] + 2) * 4;
		} else if (next == 44) {
			if (off + 8 > end || bpf_skb_load_bytes(skb, off, h, 4) < 0)
				return;
			if (((h[2] << 8 | h[3]) & 0xfff9) != 0)
				fragmented = 1; // offset != 0 or more-fragments
			hl = 8;
		} else {
			if (off + 8 > end || bpf_skb_load_bytes(skb, off, h, 2) < 0)
				return;
			hl = ((__u32)h[1] + 1) * 8;
		}
		if (off + hl > end)
			return;
		next = h[0];
		off += hl;
	}
	if (next == 0 || next == 60 || next == 43 || next == 44 || next == 51)
		return; // deeper than MAX_EXT_HEADERS: treated as no upper layer (documented)
upper:
	if (next != 58 || fragmented)
		return;
	if (off + 8 > end)
		return;
	if (bpf_skb_load_bytes(skb, off, h, 1) < 0)
		return;
	p->icmp = 1;
	p->icmp_kind = h[0];
	if ((h[0] == 135 || h[0] == 136) && off + 24 <= end) {
		__builtin_memset(&p->target, 0, sizeof(p->target));
		p->target.family = 6;
		if (bpf_skb_load_bytes(skb, off + 8, p->target.addr, 16) == 0)
			p->has_target = 1;
	}
}

// Returns 0, or -1 for a runt (< 14 bytes).
static __always_inline int classify(struct __sk_buff *skb, struct pkt *p)
{
	__u32 len = skb->len;
	__u8 eth[14];
	__u16 type;
	__u32 l3off = 14;

	__builtin_memset(p, 0, sizeof(*p));
	p->gso = skb->gso_size != 0;
	if (len < 14 || bpf_skb_load_bytes(skb, 0, eth, 14) < 0)
		return -1;
	__builtin_memcpy(p->dst, eth, 6);
	__builtin_memcpy(p->src, eth + 6, 6);
	type = (__u16)eth[12] << 8 | eth[13];
	p->len = len;
	if (skb->vlan_present) {
		// The tag was taken out of the frame by the receive path: the frame "as sent" had it.
		p->has_vlan = 1;
		p->vid = skb->vlan_tci & 0x0fff;
		p->len = len + 4;
	} else if (type == ETH_P_8021Q || type == ETH_P_8021AD) {
		__u8 tag[4];

		if (len < 18 || bpf_skb_load_bytes(skb, 14, tag, 4) < 0) {
			p->l3 = L3_MALFORMED_OTHER; // VlanTruncated: no tag, no keys
			return 0;
		}
		p->has_vlan = 1;
		p->vid = ((__u16)tag[0] << 8 | tag[1]) & 0x0fff;
		type = (__u16)tag[2] << 8 | tag[3];
		l3off = 18;
	}
	__u32 avail = len - l3off;

	if (type == ETH_P_ARP) {
		__u8 a[28];

		if (avail < 28 || bpf_skb_load_bytes(skb, l3off, a, 28) < 0) {
			p->l3 = L3_MALFORMED_OTHER;
			return 0;
		}
		p->l3 = L3_ARP;
		set_v4(&p->dkey, a + 24);
		set_v4(&p->skey, a + 14);
		p->gsrc = p->skey;
		p->has_dst = p->has_src = p->has_gsrc = 1;
		p->gsrc_unspec = is_zero(a + 14, 4);
		return 0;
	}
	if (type == ETH_P_IP) {
		__u8 ip[20];
		__u32 hl, total;

		if (avail < 20 || bpf_skb_load_bytes(skb, l3off, ip, 20) < 0)
			goto bad_ip;
		hl = (ip[0] & 0x0f) * 4;
		total = (__u32)ip[2] << 8 | ip[3];
		if (ip[0] >> 4 != 4 || hl < 20 || total > avail || total < hl)
			goto bad_ip;
		p->l3 = L3_IPV4;
		set_v4(&p->dkey, ip + 16);
		set_v4(&p->skey, ip + 12);
		p->gsrc = p->skey;
		p->has_dst = p->has_src = p->has_gsrc = 1;
		p->gsrc_unspec = is_zero(ip + 12, 4);
		return 0;
	}
	if (type == ETH_P_IPV6) {
		__u8 ip[40];
		__u32 end;

		if (avail < 40 || bpf_skb_load_bytes(skb, l3off, ip, 40) < 0)
			goto bad_ip;
		if (ip[0] >> 4 != 6)
			goto bad_ip;
		p->l3 = L3_IPV6;
		__builtin_memset(&p->gsrc, 0, sizeof(p->gsrc));
		p->gsrc.family = 6;
		__builtin_memcpy(p->gsrc.addr, ip + 8, 16);
		p->has_gsrc = 1;
		p->gsrc_unspec = is_zero(ip + 8, 16);
		end = 40 + ((__u32)ip[4] << 8 | ip[5]);
		if (end > avail)
			end = avail;
		ipv6_upper(skb, p, l3off + 40, l3off + end, ip[6]);
		// R-CLS-3: ICMPv6 from :: right after the fixed header (measured on the bytes present).
		if (p->gsrc_unspec && ip[6] == 58) {
			__u8 m[24];

			if (avail < 48 || bpf_skb_load_bytes(skb, l3off + 40, m, 1) < 0) {
				p->l3 = L3_MALFORMED_OTHER; // NdTruncated
				p->icmp = p->has_target = p->has_gsrc = 0;
				return 0;
			}
			if (m[0] != 135)
				return 0; // no keys
			if (avail < 64 || bpf_skb_load_bytes(skb, l3off + 48, m, 16) < 0) {
				p->l3 = L3_MALFORMED_OTHER;
				p->icmp = p->has_target = p->has_gsrc = 0;
				return 0;
			}
			__builtin_memset(&p->dkey, 0, sizeof(p->dkey));
			p->dkey.family = 6;
			__builtin_memcpy(p->dkey.addr, m, 16);
			p->skey = p->dkey;
			p->has_dst = p->has_src = 1;
			return 0;
		}
		__builtin_memset(&p->dkey, 0, sizeof(p->dkey));
		p->dkey.family = 6;
		__builtin_memcpy(p->dkey.addr, ip + 24, 16);
		p->skey = p->gsrc;
		p->has_dst = p->has_src = 1;
		return 0;
	}
	p->l3 = type == 0x8808 ? L3_PAUSE : L3_OTHER;
	return 0;
bad_ip:
	p->l3 = L3_MALFORMED_IP;
	return 0;
}

// ---- helpers -------------------------------------------------------------------------------

static __always_inline struct port_cfg *get_cfg(void)
{
	__u32 zero = 0;
	struct port_cfg *c = bpf_map_lookup_elem(&config, &zero);

	if (!c || c->master_ifindex == 0)
		return 0;
	return c;
}

static __always_inline struct port_ctr *pctr(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&port_stats, &zero);
}

static __always_inline struct slave_ctr *sctr(__u32 id)
{
	return bpf_map_lookup_elem(&slave_stats, &id);
}

static __always_inline void count_rx(__u32 id, __u32 len, int mc)
{
	struct slave_ctr *s = sctr(id);

	if (s) {
		s->rx_packets++;
		s->rx_bytes += len;
		if (mc)
			s->rx_multicast++;
	}
}

static __always_inline void slave_rx_drop(__u32 id, __u32 reason)
{
	struct slave_ctr *s = sctr(id);

	if (s && reason < NREASONS)
		s->rx_dropped[reason]++;
}

// The owner of an address, active or not (AddressTable::owner), or 0.
static __always_inline __u32 owner(struct addr_key *k)
{
	__u32 *id = bpf_map_lookup_elem(&addrs, k);

	return id ? *id : 0;
}

// Port::lookup: the owner, if that slave is up (an address is active while its slave is up);
// its entry in `*entry` (looked up once per frame).
static __always_inline __u32 lookup_slave(struct addr_key *k, struct slave **entry)
{
	__u32 id = owner(k);
	struct slave *s;

	*entry = 0;
	if (!id)
		return 0;
	s = bpf_map_lookup_elem(&slaves, &id);
	if (!s || !(s->flags & SLAVE_UP))
		return 0;
	*entry = s;
	return id;
}

// Port::lookup_rx: lookup_slave without the host slave's entries (the master's own addresses).
static __always_inline __u32 lookup_rx(struct addr_key *k, struct slave **entry)
{
	__u32 id = lookup_slave(k, entry);

	if (id && *entry && ((*entry)->flags & SLAVE_HOST)) {
		*entry = 0;
		return 0;
	}
	return id;
}

static __always_inline struct trace *trace_begin(struct port_cfg *c, __u32 hook)
{
	__u32 zero = 0;
	struct trace *t;

	if (!c->trace)
		return 0;
	t = bpf_map_lookup_elem(&trace, &zero);
	if (!t)
		return 0;
	t->ts = bpf_ktime_get_ns();
	t->hook = hook;
	t->verdict = V_NONE;
	t->target = t->reason = t->site = t->family = t->ncopies = 0;
	return t;
}

static __always_inline void trace_copy(struct trace *t, __u32 v)
{
	if (t) {
		__u32 n = t->ncopies;

		if (n < FANOUT_MAX) {
			t->copies[n] = v;
			t->ncopies = n + 1;
		}
	}
}

// Per-CPU token bucket over multicast frames (R-MC-1's bound). 1: admitted.
static __always_inline int mc_admit(struct port_cfg *c)
{
	__u32 zero = 0;
	struct bucket *b;
	__u64 now, elapsed, add;

	if (c->mc_burst == 0)
		return 1;
	b = bpf_map_lookup_elem(&mc_bucket, &zero);
	if (!b)
		return 1;
	now = bpf_ktime_get_ns();
	if (b->last_ns == 0) {
		b->tokens = c->mc_burst;
		b->last_ns = now;
	}
	elapsed = now - b->last_ns;
	if (elapsed >= 1000000000ull) {
		b->tokens = c->mc_burst;
		b->last_ns = now;
	} else if (c->mc_rate) {
		add = elapsed * c->mc_rate / 1000000000ull;
		if (add) {
			b->tokens += add;
			if (b->tokens > c->mc_burst)
				b->tokens = c->mc_burst;
			b->last_ns += add * 1000000000ull / c->mc_rate;
		}
	}
	if (b->tokens == 0)
		return 0;
	b->tokens--;
	return 1;
}

#define FAN_CHECK_MTU 1u // a slave-originated frame's copy must fit the receiver (R-MTU-4)
#define FAN_WIRE 2u      // a wire frame: not to the host slave (multicast_fanout)

// One fan-out copy to slave `id` if it is up; copies of slave-originated frames (`opts` has
// FAN_CHECK_MTU) must fit the receiver (R-MTU-4); the wire's (FAN_WIRE) skip the host slave. A global function: the verifier checks it once, not once per
// iteration of the fan-out loop (which would exceed its 1M-instruction budget).
__attribute__((noinline)) int fan_one(struct __sk_buff *skb, __u32 id, __u32 len, __u32 opts)
{
	__u32 zero = 0;
	struct slave *s = bpf_map_lookup_elem(&slaves, &id);
	struct port_cfg *c = bpf_map_lookup_elem(&config, &zero);
	struct trace *t = 0;
	struct port_ctr *pc;

	if (!s || !(s->flags & SLAVE_UP))
		return 0;
	if ((opts & FAN_WIRE) && (s->flags & SLAVE_HOST))
		return 0;
	if (c && c->trace)
		t = bpf_map_lookup_elem(&trace, &zero);
	if ((opts & FAN_CHECK_MTU) && len > s->mtu + MTU_SLACK) {
		slave_rx_drop(id, R_MTU_EXCEEDED);
		mon_drop(skb, id, MON_RX, R_MTU_EXCEEDED);
		trace_copy(t, id | COPY_DROPPED);
		return 0;
	}
	count_rx(id, len, 1);
	trace_copy(t, id);
	if (bpf_clone_redirect(skb, s->host_ifindex, 0) != 0) {
		pc = pctr();
		if (pc)
			pc->clone_failed++;
	}
	return 0;
}

// One copy per up slave in creation order but `sender` (multicast_fanout).
static __always_inline void fan_out(struct __sk_buff *skb, struct pkt *p, __u32 sender,
				    struct port_ctr *pc)
{
	__u32 opts = sender ? (p->gso ? 0 : FAN_CHECK_MTU) : FAN_WIRE;
	__u32 len = p->len;

	for (__u32 i = 0; i < FANOUT_MAX; i++) {
		__u32 key = i;
		__u32 *idp = bpf_map_lookup_elem(&fanout, &key);
		__u32 id;

		if (!idp || *idp == 0)
			return;
		id = *idp;
		if (id != sender)
			fan_one(skb, id, len, opts);
	}
	if (pc)
		pc->fanout_cut++;
}

static __always_inline int to_slave(struct slave *s)
{
	if (!s)
		return TC_ACT_SHOT;
	// Peer redirect cannot stay in one netns; an ipvtap (MAC_GUARD) has no peer: the TAP's
	// egress is read by the VMM.
	if (s->flags & (SLAVE_SAME_NS | SLAVE_MAC_GUARD))
		return bpf_redirect(s->host_ifindex, 0);
	return bpf_redirect_peer(s->host_ifindex, 0);
}

// ---- DHCPv4 (ipvlan_core::dhcp) ----------------------------------------------------------

// ipvlan_core::dhcp::parse for one direction: an untagged, valid IPv4 packet (classify checked
// version, header length and total length), UDP, fragment offset 0, ports `sport` -> `dport`,
// op `op`, at least DHCP_FIXED_LEN bytes of UDP payload within the total length. 1 and the
// xid in `*xid` if so.
static __always_inline int dhcp_msg(struct __sk_buff *skb, struct pkt *p, __u16 sport,
				    __u16 dport, __u8 op, __u32 *xid, __u32 *opt_off, __u32 *opt_len)
{
	__u8 ip[20];
	__u8 u[16];
	__u32 hl, total;

	if (p->l3 != L3_IPV4 || p->has_vlan)
		return 0;
	if (bpf_skb_load_bytes(skb, 14, ip, 20) < 0 || ip[9] != 17)
		return 0;
	if ((((__u16)ip[6] << 8 | ip[7]) & 0x1fff) != 0)
		return 0;
	hl = (ip[0] & 0x0f) * 4;
	total = (__u32)ip[2] << 8 | ip[3];
	if (hl + 8 + DHCP_FIXED_LEN > total || hl > 60)
		return 0;
	if (bpf_skb_load_bytes(skb, 14 + hl, u, 16) < 0)
		return 0;
	if (((__u16)u[0] << 8 | u[1]) != sport || ((__u16)u[2] << 8 | u[3]) != dport || u[8] != op)
		return 0;
	__builtin_memcpy(xid, u + 12, 4);
	*opt_off = 14 + hl + 8 + DHCP_FIXED_LEN;
	*opt_len = total - (hl + 8 + DHCP_FIXED_LEN);
	return 1;
}

// Copies the options of slave `from`'s DHCP request (`len` bytes at `off`) into its dhcp_reqs
// entry. A global function: verified once.
__attribute__((noinline)) int dhcp_snap(struct __sk_buff *skb, __u32 from, __u32 off, __u32 len)
{
	struct dhcp_req *r = bpf_map_lookup_elem(&dhcp_reqs, &from);
	__u64 n = len & 0xffff; // 64 bits wide: the bounds checked are the helper's argument's

	if (!r)
		return 0;
	if (n > DHCP_SNAP)
		n = DHCP_SNAP;
	// Keep the clamped value in the register the helper gets (the compiler would otherwise
	// pass `len` and select), and bound it there for the verifier.
	asm volatile("" : "+r"(n));
	r->seq++;
	r->truncated = len > DHCP_SNAP;
	if (n == 0 || n > DHCP_SNAP || bpf_skb_load_bytes(skb, off, r->opts, n) < 0)
		n = 0;
	r->len = n;
	r->seq++;
	return 0;
}

// Port::note_dhcp_request: l2, a DHCP request `from` sends out is remembered by its xid; a
// live entry of another slave taken over is counted.
static __always_inline void dhcp_note_request(struct __sk_buff *skb, struct port_cfg *c,
					      struct pkt *p, __u32 from, struct port_ctr *pc)
{
	struct dhcp_xid v = {}, *old;
	__u32 xid, off, len;

	if (c->mode != MODE_L2 || !dhcp_msg(skb, p, 68, 67, 1, &xid, &off, &len))
		return;
	dhcp_snap(skb, from, off, len);
	v.slave = from;
	v.ts = bpf_ktime_get_ns();
	old = bpf_map_lookup_elem(&dhcp_xids, &xid);
	if (old && old->slave != from && v.ts - old->ts < DHCP_XID_TTL_NS && pc)
		pc->dhcp_xid_taken++;
	bpf_map_update_elem(&dhcp_xids, &xid, &v, BPF_ANY);
}

// decide_rx's dhcp_reply_for: the up slave whose live xid this DHCP reply carries, or 0; its
// entry in `*entry`.
static __always_inline __u32 dhcp_reply_for(struct __sk_buff *skb, struct pkt *p,
					    struct slave **entry)
{
	struct dhcp_xid *v;
	struct slave *s;
	__u32 xid, id, off, len;

	*entry = 0;
	if (!dhcp_msg(skb, p, 67, 68, 2, &xid, &off, &len))
		return 0;
	v = bpf_map_lookup_elem(&dhcp_xids, &xid);
	if (!v || bpf_ktime_get_ns() - v->ts >= DHCP_XID_TTL_NS)
		return 0;
	id = v->slave;
	s = bpf_map_lookup_elem(&slaves, &id);
	if (!s || !(s->flags & SLAVE_UP))
		return 0;
	*entry = s;
	return id;
}

static __always_inline void count_steered(__u32 id)
{
	struct slave_ctr *s = sctr(id);

	if (s)
		s->rx_dhcp_steered++;
}

// ---- from_slave ----------------------------------------------------------------------------

struct tx_dec {
	__u32 verdict;
	__u32 target;
	__u32 reason;
	__u32 site;
	__u32 family;
	struct slave *to; // the target's entry (deliver)
};

static __always_inline void tx_drop(struct tx_dec *d, __u32 reason, __u32 site, __u32 target)
{
	d->verdict = V_DROP;
	d->reason = reason;
	d->site = site;
	d->target = target;
}

// decide_tx's guard(): 0 or a drop reason + 1.
static __always_inline __u32 guard(struct pkt *p, __u32 from, struct slave *me)
{
	if (!(me->flags & SLAVE_SPOOFCHK))
		return 0;
	if (p->l3 == L3_ARP || p->l3 == L3_IPV4 || p->l3 == L3_IPV6) {
		if (!p->gsrc_unspec && owner(&p->gsrc) != from)
			return R_SPOOFED_SOURCE + 1;
		if (p->l3 != L3_IPV6 || !p->icmp)
			return 0;
		if ((p->icmp_kind == 134 || p->icmp_kind == 137) && !(me->flags & SLAVE_ROUTER))
			return R_ROUTER_MESSAGE + 1;
		if (p->icmp_kind == 136 && p->has_target && owner(&p->target) != from)
			return R_SPOOFED_SOURCE + 1;
		if (p->icmp_kind == 135 && p->has_target && p->gsrc_unspec) {
			__u32 o = owner(&p->target);

			if (o && o != from)
				return R_SPOOFED_SOURCE + 1;
		}
		return 0;
	}
	if (p->l3 == L3_OTHER && p->has_vlan)
		return R_SPOOFED_SOURCE + 1;
	return 0;
}

static __always_inline void deliver_local(struct tx_dec *d, struct pkt *p, __u32 to,
					  struct slave *s)
{
	if (!s) {
		tx_drop(d, R_RECEIVER_DOWN, SITE_RECEIVER, to);
		return;
	}
	if (!p->gso && p->len > s->mtu + MTU_SLACK) {
		tx_drop(d, R_MTU_EXCEEDED, SITE_RECEIVER, to);
		return;
	}
	d->verdict = V_DELIVER;
	d->target = to;
	d->to = s;
}

static __always_inline void decide_tx(struct port_cfg *c, struct pkt *p, __u32 from,
				      struct slave *me, struct tx_dec *d)
{
	__u32 g = guard(p, from, me);
	// keys_tx: none for a tagged frame (R-CLS-4)
	struct slave *ts = 0;
	__u32 to = (p->has_dst && !p->has_vlan) ? lookup_slave(&p->dkey, &ts) : 0;
	int group = p->dst[0] & 1;

	if (g) {
		tx_drop(d, g - 1, SITE_SENDER, 0);
		return;
	}
	if (me->flags & SLAVE_HOST) {
		// decide_tx_host: to slaves only, never out of the master
		if (group) {
			if (c->mode != MODE_L2)
				tx_drop(d, R_L3_MULTICAST, SITE_SENDER, 0);
			else if (p->l3 == L3_PAUSE && !p->has_vlan)
				tx_drop(d, R_PAUSE_FRAME, SITE_SENDER, 0);
			else
				d->verdict = V_MULTICAST;
		} else if (to && to != from) {
			deliver_local(d, p, to, ts);
		} else {
			tx_drop(d, R_RECEIVER_DOWN, SITE_SENDER, 0);
		}
		return;
	}
	// host_target: a slave to the master's own address, whatever the flag
	if (!group && to && ts && (ts->flags & SLAVE_HOST) &&
	    (c->mode != MODE_L2 || mac_eq(p->dst, c->master_mac))) {
		deliver_local(d, p, to, ts);
		return;
	}
	if (c->mode == MODE_L2) {
		// R-TX-L2-1(1); the source MAC counts as the master's (identity is asserted first)
		if (c->flag != FLAG_VEPA && mac_eq(p->dst, c->master_mac)) {
			if (to && c->flag == FLAG_PRIVATE)
				tx_drop(d, R_PRIVATE_UNICAST, SITE_SENDER, 0);
			else if (to)
				deliver_local(d, p, to, ts);
			else if (p->gso || p->len <= c->master_mtu + MTU_SLACK)
				d->verdict = V_TO_HOST;
			else
				tx_drop(d, R_MTU_EXCEEDED, SITE_MASTER, 0);
			return;
		}
		if (group) {
			if (p->l3 == L3_PAUSE && !p->has_vlan)
				tx_drop(d, R_PAUSE_FRAME, SITE_SENDER, 0);
			else
				d->verdict = V_MULTICAST;
			return;
		}
		d->verdict = V_TRANSMIT;
		return;
	}
	if (c->flag != FLAG_VEPA && to) {
		if (c->flag == FLAG_PRIVATE)
			tx_drop(d, R_PRIVATE_UNICAST, SITE_SENDER, 0);
		else
			deliver_local(d, p, to, ts);
		return;
	}
	if (group)
		tx_drop(d, R_L3_MULTICAST, SITE_SENDER, 0);
	else if (p->has_vlan)
		tx_drop(d, R_L3_NOT_IP, SITE_SENDER, 0);
	else if (p->l3 == L3_IPV4 || p->l3 == L3_IPV6) {
		d->verdict = V_ROUTE;
		d->family = p->l3 == L3_IPV4 ? 4 : 6;
	} else if (p->l3 == L3_MALFORMED_IP)
		tx_drop(d, R_MALFORMED_IP, SITE_SENDER, 0);
	else
		tx_drop(d, R_L3_NOT_IP, SITE_SENDER, 0);
}

#define MAX_ND_OPTIONS 8 // NDP options walked per message (RFC 4861 §4.6)

// The source/target link-layer address options of an untagged NDP message sent right after
// the fixed IPv6 header become the master's MAC, with the ICMPv6 checksum updated
// (ipvlan_core::identity::rewrite_ndp; messages behind extension headers are left alone).
static __always_inline void assert_nd_identity(struct __sk_buff *skb, struct port_cfg *c)
{
	__u8 ip[7];
	__u8 kind;
	__u32 off, end, hdr;

	if (bpf_skb_load_bytes(skb, 14, ip, 7) < 0 || ip[6] != 58)
		return;
	end = 14 + 40 + ((__u32)ip[4] << 8 | ip[5]);
	if (end > skb->len)
		end = skb->len;
	if (bpf_skb_load_bytes(skb, 14 + 40, &kind, 1) < 0)
		return;
	switch (kind) {
	case 133: hdr = 8; break;  // router solicitation
	case 134: hdr = 16; break; // router advertisement
	case 135:                  // neighbour solicitation
	case 136: hdr = 24; break; // neighbour advertisement
	case 137: hdr = 40; break; // redirect
	default: return;
	}
	off = 14 + 40 + hdr;
	for (int i = 0; i < MAX_ND_OPTIONS; i++) {
		__u8 opt[8];
		__u32 olen;

		if (off + 8 > end || bpf_skb_load_bytes(skb, off, opt, 8) < 0)
			return;
		olen = (__u32)opt[1] * 8;
		if (olen == 0)
			return; // malformed: receivers drop it anyway
		if ((opt[0] == 1 || opt[0] == 2) && olen == 8 && !mac_eq(opt + 2, c->master_mac)) {
			__u16 old[3], new[3];

			__builtin_memcpy(old, opt + 2, 6);
			__builtin_memcpy(new, c->master_mac, 6);
			for (int w = 0; w < 3; w++)
				bpf_l4_csum_replace(skb, 14 + 40 + 2, old[w], new[w], 2);
			bpf_skb_store_bytes(skb, off + 2, c->master_mac, 6, 0);
		}
		off += olen;
	}
}

// The slave speaks with the master's link-layer identity only (ipvlan_core::identity): the
// Ethernet source, the ARP sender hardware address and NDP link-layer address options.
static __always_inline void assert_identity(struct __sk_buff *skb, struct port_cfg *c,
					    struct pkt *p)
{
	__u8 sha[6];

	if (!mac_eq(p->src, c->master_mac)) {
		bpf_skb_store_bytes(skb, 6, c->master_mac, 6, 0);
		__builtin_memcpy(p->src, c->master_mac, 6);
	}
	if (p->l3 == L3_ARP && !skb->vlan_present && !p->has_vlan &&
	    bpf_skb_load_bytes(skb, 14 + 8, sha, 6) == 0 &&
	    !mac_eq(sha, c->master_mac))
		bpf_skb_store_bytes(skb, 14 + 8, c->master_mac, 6, 0);
	if (p->l3 == L3_IPV6 && p->icmp && !skb->vlan_present && !p->has_vlan)
		assert_nd_identity(skb, c);
}

// R-TX-L3-3 by FIB: the master namespace's forwarding table, then the neighbour subsystem.
// 0: not routable this way (the caller hands the packet to the stack).
static __always_inline int route_fib(struct __sk_buff *skb, struct pkt *p)
{
	struct bpf_fib_lookup f = {};
	int rc;

	f.ifindex = skb->ingress_ifindex;
	if (p->l3 == L3_IPV4) {
		__u8 ip[20];

		if (bpf_skb_load_bytes(skb, 14, ip, 20) < 0)
			return 0;
		f.family = 2; // AF_INET
		f.tos = ip[1];
		f.l4_protocol = ip[9];
		f.tot_len = (__u16)ip[2] << 8 | ip[3];
		__builtin_memcpy(&f.ipv4_src, ip + 12, 4);
		__builtin_memcpy(&f.ipv4_dst, ip + 16, 4);
	} else {
		__u8 ip[40];

		if (bpf_skb_load_bytes(skb, 14, ip, 40) < 0)
			return 0;
		f.family = 10; // AF_INET6
		f.l4_protocol = ip[6];
		f.tot_len = ((__u16)ip[4] << 8 | ip[5]) + 40;
		__builtin_memcpy(f.ipv6_src, ip + 8, 16);
		__builtin_memcpy(f.ipv6_dst, ip + 24, 16);
	}
	rc = bpf_fib_lookup(skb, &f, sizeof(f), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return 0;
	return bpf_redirect_neigh(f.ifindex, 0, 0, 0);
}

// The fingerprint of an untagged IPv4/IPv6 packet for the routing-loop check. -1: none.
static __always_inline int routed_fingerprint(struct __sk_buff *skb, struct pkt *p,
					      struct routed_key *k)
{
	if (p->l3 == L3_IPV4) {
		__u8 ip[20];
		__u32 hl;

		if (bpf_skb_load_bytes(skb, 14, ip, 20) < 0)
			return -1;
		hl = (ip[0] & 0x0f) * 4;
		k->family = 4;
		k->proto = ip[9];
		k->id = (__u32)ip[4] << 8 | ip[5];
		__builtin_memcpy(k->src, ip + 12, 4);
		__builtin_memcpy(k->dst, ip + 16, 4);
		if (hl >= 20 && hl <= 60)
			bpf_skb_load_bytes(skb, 14 + hl, k->l4, 8);
		return 0;
	}
	if (p->l3 == L3_IPV6) {
		__u8 ip[40];

		if (bpf_skb_load_bytes(skb, 14, ip, 40) < 0)
			return -1;
		k->family = 6;
		k->proto = ip[6];
		k->id = ((__u32)ip[1] & 0x0f) << 16 | (__u32)ip[2] << 8 | ip[3];
		__builtin_memcpy(k->src, ip + 8, 16);
		__builtin_memcpy(k->dst, ip + 24, 16);
		bpf_skb_load_bytes(skb, 14 + 40, k->l4, 8);
		return 0;
	}
	return -1;
}

// Adds one to the TTL / hop limit (below 255) of an untagged IPv4/IPv6 packet about to be
// forwarded by the master namespace, which takes it off again.
static __always_inline void restore_hop(struct __sk_buff *skb, struct pkt *p)
{
	__u8 h[2];

	if (p->l3 == L3_IPV4) {
		if (bpf_skb_load_bytes(skb, 14 + 8, h, 2) < 0 || h[0] == 255 || h[0] == 0)
			return;
		__u16 old = bpf_htons((__u16)h[0] << 8 | h[1]);
		__u16 new = bpf_htons((__u16)(h[0] + 1) << 8 | h[1]);

		bpf_l3_csum_replace(skb, 14 + 10, old, new, 2);
		h[0]++;
		bpf_skb_store_bytes(skb, 14 + 8, h, 1, 0);
	} else if (p->l3 == L3_IPV6) {
		if (bpf_skb_load_bytes(skb, 14 + 7, h, 1) < 0 || h[0] == 255 || h[0] == 0)
			return;
		h[0]++;
		bpf_skb_store_bytes(skb, 14 + 7, h, 1, 0);
	}
}

// Fills a FIB lookup from the IPv4 header of an untagged packet. -1: no header.
static __always_inline int fib_v4(struct __sk_buff *skb, struct bpf_fib_lookup *f)
{
	__u8 ip[20];

	if (bpf_skb_load_bytes(skb, 14, ip, 20) < 0)
		return -1;
	f->family = 2; // AF_INET
	f->tos = ip[1];
	f->l4_protocol = ip[9];
	// tot_len 0: no MTU check. Where the packet goes is the question here; a packet too big
	// for the route (a GSO super-frame always is) is the master namespace's to fragment or
	// answer with "fragmentation needed", as the kernel's local output does.
	f->tot_len = 0;
	__builtin_memcpy(&f->ipv4_src, ip + 12, 4);
	__builtin_memcpy(&f->ipv4_dst, ip + 16, 4);
	return 0;
}

// IPv4 l3 egress leaves through the master, as the kernel's does (ipvlan_process_v4_outbound
// looks the route up with flowi4_oif = the master). 0: the master namespace's forwarding
// would send it out of the master (or keep it: a local destination), go on with it. Else the
// verdict that sends it out of the master directly: by the master namespace's route through
// the master, or with the destination taken as on-link there when it has none (as
// ip_route_output_key does for an output interface without a route) — netfilter does not see
// these.
static __always_inline int pin_v4_to_master(struct __sk_buff *skb, struct port_cfg *c, __u32 gso)
{
	struct bpf_fib_lookup f = {};
	struct bpf_redir_neigh nh = {};
	int rc;

	if (fib_v4(skb, &f) < 0)
		return 0;
	f.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &f, sizeof(f), BPF_FIB_LOOKUP_SKIP_NEIGH);
	// With tot_len 0 the skb's own length is checked against the route's device
	// (is_skb_forwardable): FRAG_NEEDED means "through that device, but too big". Through the
	// master, the forwarding path fragments it or answers "fragmentation needed".
	if (((rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) &&
	     f.ifindex == c->master_ifindex) ||
	    rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return 0;
	__builtin_memset(&f, 0, sizeof(f));
	if (fib_v4(skb, &f) < 0)
		return 0;
	f.ifindex = c->master_ifindex;
	rc = bpf_fib_lookup(skb, &f, sizeof(f), BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH);
	// Too big for the master: a redirect would be dropped unseen; the forwarding path can
	// fragment or answer it (by the host's route, the one approximation left).
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED || (!gso && skb->len > c->master_mtu + 14))
		return 0;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && f.ifindex == c->master_ifindex) {
		nh.nh_family = 2;
		nh.ipv4_nh = f.ipv4_dst; // the gateway, or the destination itself
		return bpf_redirect_neigh(c->master_ifindex, &nh, sizeof(nh), 0);
	}
	return bpf_redirect_neigh(c->master_ifindex, 0, 0, 0);
}

SEC("classifier") // not "tc": aya 0.14 only knows "classifier"
int from_slave(struct __sk_buff *skb)
{
	struct port_cfg *c = get_cfg();
	struct port_ctr *pc;
	struct slave *me;
	struct slave_ctr *mine;
	struct trace *t;
	struct tx_dec d = {};
	struct pkt p;
	__u32 from, *fromp, ifx = skb->ingress_ifindex;

	// Only attached to our host ends: a frame from one the maps do not (or no longer) know, or
	// of an unconfigured port, is dropped uncounted — passing it would let the master
	// namespace forward it (the host end forwards) past every rule of the port.
	if (!c)
		return TC_ACT_SHOT;
	fromp = bpf_map_lookup_elem(&host_slave, &ifx);
	if (!fromp)
		return TC_ACT_SHOT;
	from = *fromp;
	me = bpf_map_lookup_elem(&slaves, &from);
	if (!me)
		return TC_ACT_SHOT;
	t = trace_begin(c, 1);
	pc = pctr();
	mine = sctr(from);
	if (classify(skb, &p) < 0) {
		tx_drop(&d, R_RUNT, SITE_SENDER, 0); // R-TX-0
	} else if ((me->flags & SLAVE_MAC_GUARD) && !mac_eq(p.src, c->master_mac)) {
		// decide_tx's MAC guard, judged before the identity rewrite would hide it
		tx_drop(&d, R_FOREIGN_SOURCE_MAC, SITE_SENDER, 0);
	} else {
		assert_identity(skb, c, &p);
		decide_tx(c, &p, from, me, &d);
	}
	if (t) {
		t->verdict = d.verdict;
		t->target = d.target;
		t->reason = d.reason;
		t->site = d.site;
		t->family = d.family;
	}
	// Port::handle_tx accounting (R-STAT-1)
	if (d.verdict == V_DROP && d.site == SITE_SENDER) {
		if (mine && d.reason < NREASONS)
			mine->tx_dropped[d.reason]++;
		mon_drop(skb, from, MON_TX, d.reason);
		return TC_ACT_SHOT;
	}
	if (mine) {
		mine->tx_packets++;
		mine->tx_bytes += p.len;
	}
	if (d.verdict == V_TRANSMIT || d.verdict == V_MULTICAST)
		dhcp_note_request(skb, c, &p, from, pc);
	switch (d.verdict) {
	case V_DELIVER:
		count_rx(d.target, p.len, 0);
		return to_slave(d.to);
	case V_TRANSMIT:
		if (!p.gso && p.len > c->master_mtu + MTU_SLACK) {
			// Too long for the master (is_skb_forwardable would drop it unseen): the
			// sender's drop, not a packet sent (R-STAT-1), as the userspace path counts a
			// send the master refused.
			if (mine) {
				mine->tx_packets--;
				mine->tx_bytes -= p.len;
				mine->tx_dropped[R_MTU_EXCEEDED]++;
			}
			mon_drop(skb, from, MON_TX, R_MTU_EXCEEDED);
			return TC_ACT_SHOT;
		}
		if (pc) {
			pc->tx_packets++;
			pc->tx_bytes += p.len;
		}
		return bpf_redirect(c->master_ifindex, 0);
	case V_TO_HOST:
		if (pc)
			pc->to_host_stack++;
		skb->mark = TOHOST_MARK; // from_master passes it without counting
		return bpf_redirect(c->master_ifindex, BPF_F_INGRESS);
	case V_ROUTE:
		if (c->has_local) {
			struct routed_key k = {};
			__u64 now = bpf_ktime_get_ns(), *seen;

			if (routed_fingerprint(skb, &p, &k) == 0) {
				seen = bpf_map_lookup_elem(&routed, &k);
				if ((me->flags & SLAVE_SAME_NS) && seen && now - *seen < LOOP_WINDOW_NS) {
					// Routed back to a slave in the master's namespace: dropped once.
					if (mine) {
						mine->tx_packets--;
						mine->tx_bytes -= p.len;
						mine->tx_dropped[R_ROUTING_LOOP]++;
					}
					mon_drop(skb, from, MON_TX, R_ROUTING_LOOP);
					bpf_map_delete_elem(&routed, &k);
					return TC_ACT_SHOT;
				}
				bpf_map_update_elem(&routed, &k, &now, BPF_ANY);
			}
		}
		if (pc)
			pc->to_host_stack++;
		if (d.family == 4) {
			int rc = pin_v4_to_master(skb, c, p.gso);

			if (rc)
				return rc;
		}
		if ((d.family == 4 ? c->route_v4 : c->route_v6) == ROUTE_FIB) {
			int rc = route_fib(skb, &p);

			if (rc)
				return rc;
			if (pc)
				pc->fib_fallback++;
		}
		// The kernel's l3 egress is the master namespace's local output: the TTL / hop limit
		// the slave set leaves as it is. The forwarding path takes one off: give it back,
		// except from a slave in the master's namespace (a loop must still run out of hops).
		if (!(me->flags & SLAVE_SAME_NS))
			restore_hop(skb, &p);
		bpf_skb_change_type(skb, PACKET_HOST);
		return TC_ACT_OK; // the master namespace forwards it
	case V_MULTICAST:
		if (!mc_admit(c)) {
			// Port::queue_multicast: backlog full, the sender's rx_dropped (R-STAT-4); the
			// frame is gone, the wire copy too (the kernel frees it).
			if (mine)
				mine->rx_dropped[R_BACKLOG_FULL]++;
			if (t) {
				t->verdict = V_DROP;
				t->reason = R_BACKLOG_FULL;
				t->site = SITE_SENDER;
			}
			mon_drop(skb, from, MON_RX, R_BACKLOG_FULL);
			return TC_ACT_SHOT;
		}
		fan_out(skb, &p, from, pc);
		if (me->flags & SLAVE_HOST)
			return TC_ACT_SHOT; // the host slave's: to the slaves only
		if (pc) {
			pc->tx_packets++;
			pc->tx_bytes += p.len;
		}
		return bpf_redirect(c->master_ifindex, 0);
	case V_DROP:
		if (d.site == SITE_RECEIVER) {
			slave_rx_drop(d.target, d.reason);
			mon_drop(skb, d.target, MON_RX, d.reason);
		} else {
			if (pc && d.reason < NREASONS)
				pc->dropped[d.reason]++;
			mon_drop(skb, 0, MON_PORT, d.reason);
		}
		return TC_ACT_SHOT;
	}
	return TC_ACT_SHOT;
}

// ---- from_master ---------------------------------------------------------------------------

SEC("classifier")
int from_master(struct __sk_buff *skb)
{
	struct port_cfg *c = get_cfg();
	struct port_ctr *pc;
	struct trace *t;
	struct pkt p;
	struct slave *ts = 0;
	__u32 to = 0;
	int group;

	if (!c)
		return TCX_NEXT_;
	if (skb->mark == TOHOST_MARK) {
		skb->mark = 0; // our own l2 ToHost, already counted
		return TCX_NEXT_;
	}
	t = trace_begin(c, 2);
	pc = pctr();
	if (classify(skb, &p) < 0 || c->mode == MODE_L3S)
		goto pass; // runts are the stack's; l3s keeps its own path (R-RX-L3S-1)
	group = p.dst[0] & 1;
	if (c->mode == MODE_L2 && group) {
		// R-RX-L2-2
		struct slave *os;
		int own = mac_eq(p.src, c->master_mac) && p.has_src &&
			  lookup_rx(&p.skey, &os);

		if (own || p.l3 == L3_PAUSE || (p.has_vlan && p.vid != 0))
			goto pass;
		if (pc)
			pc->rx_passed++;
		// A broadcast DHCP reply is not steered: every slave gets it (Port::decide_rx_l2).
		if (!mc_admit(c)) {
			if (pc)
				pc->dropped[R_BACKLOG_FULL]++;
			mon_drop(skb, 0, MON_PORT, R_BACKLOG_FULL);
			if (t)
				t->verdict = V_PASS;
			return TCX_NEXT_;
		}
		if (pc)
			pc->rx_multicast_queued++;
		if (t)
			t->verdict = V_PASS_MULTICAST;
		fan_out(skb, &p, 0, pc);
		return TCX_NEXT_;
	}
	// R-RX-L2-3, R-RX-L3-1: claimed by destination key, whatever the destination MAC
	if (p.has_dst)
		to = lookup_rx(&p.dkey, &ts);
	if (!to && c->mode == MODE_L2) {
		// An address no slave owns (yet): a DHCP offer for one goes to the slave of its xid.
		to = dhcp_reply_for(skb, &p, &ts);
		if (to && ts) {
			if (pc)
				pc->rx_claimed++;
			count_rx(to, p.len, 0);
			count_steered(to);
			if (t) {
				t->verdict = V_STEER;
				t->target = to;
			}
			return to_slave(ts);
		}
		to = 0;
	}
	if (!to)
		goto pass;
	if (pc)
		pc->rx_claimed++;
	if (p.has_vlan && p.vid != 0) {
		if (pc)
			pc->dropped[R_FOREIGN_VLAN]++;
		mon_drop(skb, 0, MON_PORT, R_FOREIGN_VLAN);
		if (t) {
			t->verdict = V_DROP;
			t->reason = R_FOREIGN_VLAN;
			t->site = SITE_MASTER;
		}
		return TC_ACT_SHOT;
	}
	count_rx(to, p.len, 0);
	if (t) {
		t->verdict = V_DELIVER;
		t->target = to;
	}
	return to_slave(ts);
pass:
	if (pc)
		pc->rx_passed++;
	if (t)
		t->verdict = V_PASS;
	return TCX_NEXT_;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
