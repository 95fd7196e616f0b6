//! The flow table: one generational slab and one limit for every
//! protocol that opens host sockets (TCP, UDP, ICMP echo).
//!
//! What this module owns:
//! - [`FlowLimit`]: the one capacity ([`crate::Config::flow_capacity`],
//!   default 2^17 - 1 as upstream) shared by every protocol: a flow of any
//!   kind takes one entry, so a guest flooding one protocol fills the same
//!   table the others use, and the engine's memory stays bounded by one
//!   number. When it is full a new flow is refused; the protocol module
//!   answers the guest (TCP: RST; UDP and ICMP: a counted drop and a
//!   rate-limited destination unreachable) and counts
//!   [`crate::DropReason::FlowTableFull`].
//! - [`FlowTable`]: a slab of one protocol's flows (each module keeps its
//!   own, typed). Entries are reused through a free list; each slot has a
//!   generation, bumped when its flow is removed, and the flow's
//!   [`token`](mod@token) carries it, so a late readiness event for a freed
//!   flow is recognised ([`FlowTable::lookup`]) and ignored.
//! - the flow counters in [`Counters`]: [`Counters::flows_opened`] and
//!   [`Counters::flows_closed`] move only here, for every protocol.
//!
//! It never allocates per packet: a table grows only when the number of
//! its flows reaches a new high, and keeps room on its free list for every
//! slot, so removing a flow never allocates either. It knows nothing of
//! protocols, sockets or time.

pub mod token;

use crate::counters::Counters;
use crate::host_io::Token;

/// The shared capacity of the flow tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLimit {
    capacity: usize,
    live: usize,
}

impl FlowLimit {
    /// At most `capacity` flows, of all kinds together.
    pub fn new(capacity: usize) -> Self {
        FlowLimit { capacity, live: 0 }
    }

    /// Flows of every kind that hold an entry (or a reserved one).
    pub fn live(&self) -> usize {
        self.live
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// No new flow can be admitted.
    pub fn is_full(&self) -> bool {
        self.live >= self.capacity
    }
}

/// The flow table is full: the new flow must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("flow table full")]
pub struct TableFull;

/// A reserved entry: its slot and generation are fixed (so its token can
/// be registered before the flow exists). Give it to [`FlowTable::fill`]
/// or back with [`FlowTable::give_back`].
#[derive(Debug)]
#[must_use = "a reserved entry holds a place in the flow limit until filled or given back"]
pub struct Vacant {
    slot: u32,
    generation: u32,
    kind: u8,
}

impl Vacant {
    /// The slot the flow will have.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The token the flow will have.
    pub fn token(&self) -> Token {
        token::flow(self.kind, self.slot, self.generation)
    }
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    flow: Option<T>,
}

/// One protocol's flows, in a slab sharing a [`FlowLimit`].
#[derive(Debug)]
pub struct FlowTable<T> {
    kind: u8,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> FlowTable<T> {
    /// An empty table whose tokens are in namespace `kind` (a
    /// [`token`](mod@token) constant).
    pub fn new(kind: u8) -> Self {
        FlowTable {
            kind,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Reserves an entry, taking one place in `limit`: the last freed slot
    /// if any, else a new one.
    pub fn vacant(&mut self, limit: &mut FlowLimit) -> Result<Vacant, TableFull> {
        if limit.is_full() {
            return Err(TableFull);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len()).map_err(|_| TableFull)?;
                self.slots.push(Slot {
                    generation: 0,
                    flow: None,
                });
                // Room for every slot on the free list, so that freeing a
                // flow never allocates.
                self.free
                    .reserve(self.slots.len().saturating_sub(self.free.len()));
                s
            }
        };
        limit.live += 1;
        Ok(Vacant {
            slot,
            generation: self.slots[slot as usize].generation,
            kind: self.kind,
        })
    }

    /// Puts `flow` in the reserved entry and counts it opened.
    pub fn fill(&mut self, v: Vacant, flow: T, counters: &mut Counters) -> u32 {
        debug_assert_eq!(v.kind, self.kind);
        self.slots[v.slot as usize].flow = Some(flow);
        self.live += 1;
        counters.flows_opened += 1;
        v.slot
    }

    /// Returns a reserved entry that was not filled (the flow could not be
    /// opened). Its generation stays: no flow ever carried its token.
    pub fn give_back(&mut self, v: Vacant, limit: &mut FlowLimit) {
        self.free.push(v.slot);
        limit.live -= 1;
    }

    /// Removes the flow in `slot`, bumps the slot's generation (its token
    /// goes stale) and counts it closed.
    pub fn remove(
        &mut self,
        slot: u32,
        limit: &mut FlowLimit,
        counters: &mut Counters,
    ) -> Option<T> {
        let s = self.slots.get_mut(slot as usize)?;
        let flow = s.flow.take()?;
        s.generation = s.generation.wrapping_add(1) & token::GENERATION_MASK;
        self.free.push(slot);
        self.live -= 1;
        limit.live -= 1;
        counters.flows_closed += 1;
        Some(flow)
    }

    /// The live flow in `slot`.
    pub fn get(&self, slot: u32) -> Option<&T> {
        self.slots.get(slot as usize)?.flow.as_ref()
    }

    /// The live flow in `slot`, mutably.
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.slots.get_mut(slot as usize)?.flow.as_mut()
    }

    /// The slot of the live flow `token` names, or `None` when it names
    /// another kind, a freed flow (stale generation) or nothing.
    pub fn lookup(&self, t: Token) -> Option<u32> {
        if token::kind(t) != self.kind {
            return None;
        }
        let (slot, generation) = token::flow_parts(t);
        let s = self.slots.get(slot as usize)?;
        (s.generation == generation && s.flow.is_some()).then_some(slot)
    }

    /// The token of the flow in `slot` (valid while it lives).
    pub fn token(&self, slot: u32) -> Option<Token> {
        let s = self.slots.get(slot as usize)?;
        s.flow
            .as_ref()
            .map(|_| token::flow(self.kind, slot, s.generation))
    }

    /// The current generation of `slot` (0 for a slot never used).
    pub fn generation(&self, slot: u32) -> u32 {
        self.slots.get(slot as usize).map_or(0, |s| s.generation)
    }

    /// Live flows in this table.
    pub fn len(&self) -> usize {
        self.live
    }

    /// No live flow.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Slots ever used (live or free): the bound of slot indices.
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Live flows with their slots, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.flow.as_ref().map(|f| (i as u32, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(
        t: &mut FlowTable<&'static str>,
        l: &mut FlowLimit,
        c: &mut Counters,
        v: &'static str,
    ) -> (u32, Token) {
        let vac = t.vacant(l).expect("room");
        let tok = vac.token();
        (t.fill(vac, v, c), tok)
    }

    #[test]
    fn the_limit_is_shared_by_every_kind_of_flow() {
        let mut limit = FlowLimit::new(2);
        let mut c = Counters::default();
        let mut tcp = FlowTable::new(token::TCP_FLOW);
        let mut udp = FlowTable::new(token::UDP_FLOW);
        let mut icmp: FlowTable<&str> = FlowTable::new(token::ICMP_FLOW);
        let (s, _) = open(&mut tcp, &mut limit, &mut c, "tcp");
        open(&mut udp, &mut limit, &mut c, "udp");
        assert!(limit.is_full());
        assert_eq!(icmp.vacant(&mut limit).unwrap_err(), TableFull);
        assert_eq!(tcp.vacant(&mut limit).unwrap_err(), TableFull);
        tcp.remove(s, &mut limit, &mut c).expect("live");
        let (_, _) = open(&mut icmp, &mut limit, &mut c, "icmp");
        assert_eq!((c.flows_opened, c.flows_closed), (3, 1));
        assert_eq!(
            (tcp.len(), udp.len(), icmp.len(), limit.live()),
            (0, 1, 1, 2)
        );
    }

    #[test]
    fn a_reused_slot_gets_a_new_generation_and_the_old_token_goes_stale() {
        let mut limit = FlowLimit::new(8);
        let mut c = Counters::default();
        let mut t = FlowTable::new(token::UDP_FLOW);
        let (s1, old) = open(&mut t, &mut limit, &mut c, "first");
        assert_eq!(t.lookup(old), Some(s1));
        t.remove(s1, &mut limit, &mut c);
        assert_eq!(t.lookup(old), None, "freed flow");
        let (s2, new) = open(&mut t, &mut limit, &mut c, "second");
        assert_eq!(s2, s1, "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(
            t.lookup(old),
            None,
            "a stale token never reaches the new flow"
        );
        assert_eq!(t.lookup(new), Some(s2));
        assert_eq!(t.get(s2), Some(&"second"));
        assert_eq!(t.token(s2), Some(new));
    }

    #[test]
    fn a_token_of_another_kind_is_not_looked_up() {
        let mut limit = FlowLimit::new(8);
        let mut c = Counters::default();
        let mut tcp = FlowTable::new(token::TCP_FLOW);
        let udp: FlowTable<&str> = FlowTable::new(token::UDP_FLOW);
        let (_, tok) = open(&mut tcp, &mut limit, &mut c, "tcp");
        assert_eq!(udp.lookup(tok), None);
        assert_eq!(udp.lookup(token::make(token::TCP_LISTENER, 0)), None);
    }

    #[test]
    fn an_entry_given_back_frees_its_place_without_counting_a_flow() {
        let mut limit = FlowLimit::new(1);
        let mut c = Counters::default();
        let mut t: FlowTable<&str> = FlowTable::new(token::ICMP_FLOW);
        let v = t.vacant(&mut limit).unwrap();
        let tok = v.token();
        assert!(limit.is_full());
        t.give_back(v, &mut limit);
        assert_eq!(limit.live(), 0);
        assert_eq!(t.lookup(tok), None);
        let (_, again) = open(&mut t, &mut limit, &mut c, "x");
        assert_eq!(again, tok, "same slot, same generation: no flow had it");
        assert_eq!((c.flows_opened, c.flows_closed), (1, 0));
    }

    #[test]
    fn removing_a_flow_twice_or_an_unknown_slot_does_nothing() {
        let mut limit = FlowLimit::new(4);
        let mut c = Counters::default();
        let mut t = FlowTable::new(token::TCP_FLOW);
        let (s, _) = open(&mut t, &mut limit, &mut c, "x");
        assert!(t.remove(s, &mut limit, &mut c).is_some());
        assert!(t.remove(s, &mut limit, &mut c).is_none());
        assert!(t.remove(99, &mut limit, &mut c).is_none());
        assert_eq!((limit.live(), c.flows_closed), (0, 1));
    }
}
