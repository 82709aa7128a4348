//! The auction of a job's shards: the call for bids to every live peer ([`ask_bids`], in
//! batches; the local worker bids from this node's cost model), the bidders made from the
//! bid sheets, each round of awards ([`Coordinator::schedule`]) and the hints to busy peers
//! of the input to fetch ahead.
//!
//! Out: `CallForBids` and `Prefetch` requests to peers (answered `Bids`, `Prefetch`).

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::prelude::*;
use libp2p::PeerId;
use rendermesh_protocol::{Bid, BidSheet, Request, Response, ShardSpec};

use super::run::Target;
use super::{Coordinator, BID_BATCH, BID_TIMEOUT, CANCEL_TIMEOUT, LINK_BYTES_PER_S, START_SPEED};
use crate::sched::auction::Bidder;

impl Coordinator {
    /// Ask every live peer for bids on the job's shards (the local worker bids from this
    /// node's cost model), then open the auction. A peer that does not answer within
    /// [`BID_TIMEOUT`] takes no shards of this job.
    pub(super) fn call_for_bids(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.clone() else {
            self.open_auction(None, Vec::new(), ctx);
            return;
        };
        let specs: Vec<ShardSpec> = self.specs.values().cloned().collect();
        let slots = self.workers.iter().map(|(_, s)| *s as u32).sum();
        let local = link.model.bid_sheet(&specs, slots, 0, |_| true);
        let peers: Vec<(PeerId, String)> = link
            .peers
            .rows()
            .into_iter()
            .filter(|p| p.slots > 0)
            .filter_map(|p| Some((p.peer_id.parse::<PeerId>().ok()?, p.name)))
            .filter(|(peer, _)| !self.lost.contains(peer))
            .collect();
        if peers.is_empty() {
            self.open_auction(Some(local), Vec::new(), ctx);
            return;
        }
        tracing::info!(job = %self.job, peers = peers.len(), shards = specs.len(), "calling for bids");
        let specs = Arc::new(specs);
        let calls = peers.into_iter().map(move |(peer, name)| {
            let (net, specs) = (link.net.clone(), specs.clone());
            async move {
                let sheet = tokio::time::timeout(BID_TIMEOUT, ask_bids(&net, peer, &specs))
                    .await
                    .unwrap_or_else(|_| Err("no answer in time".to_string()));
                (peer, name, sheet)
            }
        });
        let fut = futures::future::join_all(calls);
        ctx.wait(
            fut.into_actor(self)
                .map(move |sheets, act, ctx| act.open_auction(Some(local), sheets, ctx)),
        );
    }

    /// Bidders from the bid sheets (the local worker's, then the peers'), then the first round.
    pub(super) fn open_auction(
        &mut self,
        local: Option<BidSheet>,
        remote: Vec<(PeerId, String, Result<BidSheet, String>)>,
        ctx: &mut Context<Self>,
    ) {
        if self.failed {
            return;
        }
        let now = self.now();
        let lots = &self.lots;
        let speed_of = |sheet: &BidSheet| {
            let (mut work, mut secs) = (0.0, 0.0);
            for b in &sheet.bids {
                if let Bid::Offer {
                    shard, compute_s, ..
                } = b
                {
                    if let Some(l) = lots.get(shard) {
                        work += l.work;
                        secs += compute_s.max(1e-6);
                    }
                }
            }
            if work > 0.0 && secs > 0.0 && secs.is_finite() {
                work / secs
            } else {
                START_SPEED
            }
        };
        let declines_of = |sheet: &BidSheet| -> (BTreeSet<u32>, Option<String>) {
            let mut reason = None;
            let set = sheet
                .bids
                .iter()
                .filter_map(|b| match b {
                    Bid::Decline { shard, reason: r } => {
                        reason.get_or_insert_with(|| r.clone());
                        Some(*shard)
                    }
                    Bid::Offer { .. } => None,
                })
                .collect();
            (set, reason)
        };
        let mut notes = Vec::new();
        for (addr, slots) in &self.workers {
            let (speed, declines) = match &local {
                Some(sheet) => {
                    let (set, why) = declines_of(sheet);
                    if let Some(why) = why {
                        notes.push(format!("this node declined {} shard(s): {why}", set.len()));
                    }
                    (speed_of(sheet), set)
                }
                None => (START_SPEED, BTreeSet::new()),
            };
            self.bidders.push(Bidder {
                declines,
                ..Bidder::new(self.targets.len(), *slots as u32, speed)
            });
            self.targets.push(Target::Local(addr.clone()));
        }
        for (peer, name, sheet) in remote {
            let sheet = match sheet {
                Ok(s) if s.slots > 0 => s,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(job = %self.job, peer = %name, error = %e, "no bids from a peer; it takes no shards of this job");
                    notes.push(format!("{name} did not bid ({e})"));
                    continue;
                }
            };
            let (declines, why) = declines_of(&sheet);
            if let Some(why) = why {
                tracing::info!(job = %self.job, peer = %name, declined = declines.len(), reason = %why, "a peer declined shards");
                notes.push(format!(
                    "{name} declined {} shard(s): {why}",
                    declines.len()
                ));
            }
            let busy_slots = sheet.slots.saturating_sub(sheet.free_slots);
            let busy = if sheet.queue_s > 0.0 && sheet.queue_s.is_finite() {
                vec![now + sheet.queue_s; busy_slots as usize]
            } else {
                Vec::new()
            };
            self.bidders.push(Bidder {
                bytes_per_s: LINK_BYTES_PER_S,
                declines,
                busy,
                ..Bidder::new(self.targets.len(), sheet.slots, speed_of(&sheet))
            });
            self.targets.push(Target::Remote { peer, name });
        }
        if !notes.is_empty() {
            self.handle.update(|s| s.notes.extend(notes));
        }
        tracing::info!(job = %self.job, bidders = self.bidders.len(), "auctioning shards");
        self.schedule(ctx);
    }

    /// Award what should start now; fail the job when shards are left that nobody can take.
    pub(super) fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let now = self.now();
        for b in &mut self.bidders {
            b.settle(now);
        }
        self.refresh_estimates(now);
        let awards = self.auction.round(now, &mut self.bidders);
        for a in awards {
            let Some(spec) = self.specs.get(&a.shard).cloned() else {
                continue;
            };
            self.start_run(spec, a.bidder, a.est_finish, false, ctx);
        }
        self.send_hints(now);
        // slots held by other work free up later: the tick schedules again then
        let waiting = self.bidders.iter().any(|b| !b.busy.is_empty());
        if self.running.is_empty() && self.auction.pending() > 0 && !waiting {
            let stuck = self.auction.unplaceable(&self.bidders);
            let what = if stuck.is_empty() {
                "no node is left to run them".to_string()
            } else {
                format!("no node meets their requirements (shards {stuck:?})")
            };
            self.fail(
                format!("{} shard(s) cannot run: {what}", self.auction.pending()),
                ctx,
            );
            return;
        }
        self.speculate(ctx);
    }

    /// Tell busy peers which input to fetch ahead: that of the shard each is expected to
    /// take next ([`Auction::hints`]). Not tied to this actor, like a cancel.
    ///
    /// [`Auction::hints`]: crate::sched::auction::Auction::hints
    pub(super) fn send_hints(&mut self, now: f64) {
        let Some(link) = self.link.clone() else {
            return;
        };
        for (bidder, shard) in self.auction.hints(now, &mut self.bidders) {
            let (Some(Target::Remote { peer, name }), Some(spec)) =
                (self.targets.get(bidder), self.specs.get(&shard))
            else {
                continue;
            };
            let Some(&id) = spec.inputs.first() else {
                continue;
            };
            let (peer, job) = (*peer, self.job);
            tracing::debug!(%job, shard, peer = %name, "input sent ahead");
            let net = link.net.clone();
            link.tasks.spawn("hint", async move {
                let ask = net.request(peer, Request::Prefetch { id });
                match tokio::time::timeout(CANCEL_TIMEOUT, ask).await {
                    Ok(Ok(Response::Prefetch { started: true })) => {}
                    Ok(Ok(other)) => {
                        tracing::debug!(%job, shard, %peer, answer = other.name(), "input not fetched ahead")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%job, shard, %peer, error = %e, "prefetch failed")
                    }
                    Err(_) => tracing::debug!(%job, shard, %peer, "prefetch unanswered"),
                }
            });
        }
    }
}

/// One peer's bid sheet for `specs`, asked in batches of [`BID_BATCH`].
async fn ask_bids(
    net: &crate::net::NetworkHandle,
    peer: PeerId,
    specs: &[ShardSpec],
) -> Result<BidSheet, String> {
    let mut whole: Option<BidSheet> = None;
    for batch in specs.chunks(BID_BATCH) {
        let sheet = match net
            .request(
                peer,
                Request::CallForBids {
                    shards: batch.to_vec(),
                },
            )
            .await
        {
            Ok(Response::Bids(s)) => s,
            Ok(Response::Error(e)) => return Err(e),
            Ok(other) => return Err(format!("not a bid sheet: {}", other.name())),
            Err(e) => return Err(e.to_string()),
        };
        // every number in it is checked before it is used (slots size the bidder's queue)
        let indices: Vec<u32> = batch.iter().map(|s| s.index).collect();
        sheet.validate(&indices)?;
        match &mut whole {
            None => whole = Some(sheet),
            Some(w) => w.bids.extend(sheet.bids),
        }
    }
    whole.ok_or_else(|| "no shards to bid for".to_string())
}
