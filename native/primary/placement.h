// Placement: which worker gets the next connection, as a pure function of what the accept
// thread sees (each worker's scoreboard, plus what the primary itself sent) and the time.
// Header-only so that the accept thread and a test binding (pickForTest) run the same code.
//
// The policy, in order:
//   1. Free: a loop asleep in the poll phase with nothing waiting for it takes a connection
//      at once. Free workers win. Among them, one we sent nothing in the last kFreshUs first
//      (one that has just read a connection is asleep only until its request arrives, and
//      that request may block: what we send it now would wait behind it; one whose
//      connections have all closed since is not fresh), then the fewest
//      open connections (keep-alive clients stay spread for when load rises), then the one
//      that fell asleep last: at light
//      load the same warm worker serves everything and the others stay asleep, so the pool
//      makes as few wake-ups as one worker needs (concentration), never at the cost of a
//      busy worker taking what a free one could.
//      At light load, a loop awake under kFinishingUs with no request in flight, nothing
//      unread and no connection but the one it just answered counts as free and the warmest:
//      it is on its way back to poll (see Assess). With the hedge (steal-policy.h), so does
//      one still answering the one request it holds, while a sleeping worker could take back
//      what it leaves unread.
//   2. Prompt: awake for at most `avoid_us`, or asleep with connections just sent. The fewest
//      connections already waiting first (each is work of unknown length ahead of ours: one
//      may be a request that blocks for seconds), then one with no request in flight (a loop
//      in a handler may be at the start of a long one), then how long the next connection would
//      wait (time awake, or since its oldest unread connection), then load; ties go
//      round-robin from `start`.
//   3. Slow: awake (or not reading) past `avoid_us`. Gets a connection only while no free or
//      prompt worker can take it; the one that has held its loop the shortest first.
//   4. Suspect: a scoreboard that says nonsense (received past sent, negative counts, a time
//      in the future). Every value a worker writes is untrusted: a worker that lies must not
//      attract connections, so it comes last, and never while a connection cap applies
//      (its counts cannot prove it has room).
// A worker at its cap (maxConnectionsPerWorker, or its server's own maxConnections) gets
// nothing.
//   5. Spread: the tiers above concentrate (the warmest worker takes what it keeps up with),
//      which is right for short connections and wrong for a burst of long-lived ones: a
//      keep-alive connection stays where it was placed, so one burst placed on one worker
//      halves the pool for the connections' whole life. So the choice is overruled when it
//      holds (open + sent but not read: counted the moment it is sent) more than
//      SpreadSlack() over the least-holding worker that can take a connection without a real
//      stall (free, prompt, or slow for under kSpreadStallUs: on a busy machine, in a burst,
//      a loop is often off the CPU for tens of ms, which a connection that lives for
//      seconds can wait; a light load never gets here, so stalls still steer it).
//      Short connections close before they add up, so they stay concentrated; and until the
//      chosen worker holds kSpreadFrom connections, the tiers alone decide (a moderate load
//      keeps away from a loop blocked in a handler, whatever the counts). A worker that holds
//      more connections than it closed in the last second or two holds lasting ones (a burst
//      of keep-alive connections, not a stream of short ones passing through: with 8 workers
//      at -c64 Connection: close the busiest holds 16-46 and closes thousands a second), and
//      for it the spread starts at kSpreadFromLasting: 100 keep-alive connections opened at
//      once on 4 workers otherwise ended 64 / 27 / 5 / 5. Below kSpreadFrom a worker held
//      past avoid_us is spread to only while it makes progress (WorkerView::progressing).
#pragma once

#include <cstddef>
#include <cstdint>

namespace herdless {
namespace placement {

struct WorkerView {
  bool usable = true;              // not paused, not full, not already tried (the caller's view)
  int32_t pending = 0;             // sent - received, as the primary computes it (< 0: nonsense)
  int32_t open = 0;                // scoreboard: connections open
  int32_t in_flight = 0;           // scoreboard: requests in flight
  int32_t max_connections = 0;     // scoreboard: the server's own maxConnections, 0 = none
  uint32_t loop = 0;               // scoreboard: loop state word (bit 0 awake, bits 1..31 µs)
  uint32_t loop_since_ms = 0;      // scoreboard: ms of the last loop state change
  uint32_t unread_since_us = 0;    // primary's own: since when connections wait unread (pending > 0)
  uint32_t sent_at_us = 0;         // primary's own: when it last sent this worker a connection
  bool sent_ever = false;          // ... if it ever did
  bool served_since_sent = false;  // scoreboard: a request answered since that last send
  int64_t recent_closes = -1;      // connections it closed in the last 1-2 s (-1: not known)
  bool progressing = false;        // read a connection or answered a request since we first saw this awake span
};

struct Options {
  int32_t max_connections = 0;  // per worker (maxConnectionsPerWorker), 0 = none
  uint32_t avoid_us = 2000;     // awake longer than this: slow
  bool light = false;           // light load: the last round found at most one connection, and
                                // this is the first of its round (a finishing loop counts as free)
  bool hedge = false;           // what a worker leaves unread is taken back soon at light load
                                // (HedgeIn, steal-policy.h): a loop answering counts as free too
};

struct Clock {
  uint32_t us;
  uint32_t ms;
};

enum class Tier : int { kFree = 0, kPrompt = 1, kSlow = 2, kSuspect = 3, kNone = 4 };

struct Assessment {
  Tier tier = Tier::kNone;
  uint64_t wait_us = 0;  // how long the next connection would wait, roughly
  uint32_t idle_us = 0;  // free only: how long it has been asleep
  int64_t load = 0;      // open + in flight + pending
  int64_t pending = 0;
  bool fresh = false;        // sent a connection within kFreshUs
  uint64_t held_us = 0;      // awake this long, or its oldest unread connection this old
  int64_t holds = 0;         // connections it holds: open + pending (not requests)
  bool in_handler = false;   // a request in flight: its loop may be in the first µs of a long handler
  bool lasting = false;      // holds more than it closed lately: its connections stay (a burst of keep-alive ones)
  bool progressing = false;  // awake, but reading or answering: busy with a burst, not held in one handler
  bool answering = false;    // free only because Options::hedge lets a loop answering its one request count
};

constexpr uint32_t kPendingCostUs = 250;     // a connection already waiting costs about this much
constexpr uint32_t kFutureSlackUs = 100000;  // a clock read just before the worker's own store
constexpr uint32_t kWaitBucketUs = 250;      // prompt workers this close count as equal
constexpr uint32_t kLongSpanMs = 2000;       // past this, durations come from the ms field
constexpr int32_t kSaneCount = 1 << 24;      // more open connections than any process holds
constexpr uint32_t kFreshUs = 1000;          // a connection sent this recently has not been served yet
constexpr uint64_t kFinishingUs = 500;       // awake this briefly, nothing in flight: on its way to poll
constexpr uint64_t kSpreadStallUs = 100000;  // held past this: stalled (client-ip's default stall, too)
constexpr int64_t kSpreadSlackMin = 8;       // a worker may hold this many more than the least-holding one
constexpr int64_t kSpreadFrom = 64;          // below this many held, the tiers alone decide (no burst)
constexpr int64_t kSpreadFromLasting = 16;   // ... unless what it holds is lasting: then from this many

// How many more connections than the least-holding worker the chosen one may hold: a few in
// absolute terms (short connections concentrate), an eighth in relative ones (a burst ends
// with every share within about 1/8 of the smallest).
inline int64_t SpreadSlack(int64_t least) { return kSpreadSlackMin + least / 8; }

// Microseconds from `since` to `now` (32-bit clocks that wrap). Returns false for a time
// in the future beyond a little slack.
inline bool Elapsed(uint32_t now, uint32_t since, uint64_t* out) {
  uint32_t d = now - since;
  if (d < (1u << 31)) {
    *out = d;
    return true;
  }
  *out = 0;
  return (0u - d) <= kFutureSlackUs;
}

inline Assessment Assess(const WorkerView& w, const Options& o, Clock now) {
  Assessment a;
  if (!w.usable) return a;
  bool sane = w.pending >= 0 && w.open >= 0 && w.in_flight >= 0 && w.open < kSaneCount && w.in_flight < kSaneCount;
  int64_t pending = w.pending < 0 ? 0 : w.pending;
  int64_t open = w.open < 0 ? 0 : w.open;
  int64_t in_flight = w.in_flight < 0 ? 0 : w.in_flight;
  // Caps: ours, and the server's own (it only ever makes the cap tighter).
  int64_t cap = o.max_connections > 0 ? o.max_connections : 0;
  if (w.max_connections > 0 && (cap == 0 || w.max_connections < cap)) cap = w.max_connections;
  if (cap > 0 && (!sane || pending + open >= cap)) return a;

  bool awake = (w.loop & 1u) != 0;
  uint64_t since_change = 0;
  // The µs clock wraps every ~71 minutes: long spans come from the ms field.
  uint32_t span_ms = now.ms - w.loop_since_ms;
  if (span_ms >= (1u << 31)) {
    if ((0u - span_ms) > kFutureSlackUs / 1000) sane = false;
  } else if (span_ms > kLongSpanMs) {
    since_change = uint64_t{span_ms} * 1000;
  } else if (!Elapsed(now.us, w.loop & ~1u, &since_change)) {
    sane = false;
  }
  uint64_t unread = 0;
  if (pending > 0 && !Elapsed(now.us, w.unread_since_us, &unread)) unread = 0;  // ours: trusted

  a.load = open + in_flight + pending;
  a.in_handler = in_flight > 0;
  a.pending = pending;
  a.holds = open + pending;
  a.lasting = w.recent_closes >= 0 && a.holds > w.recent_closes;
  a.progressing = w.progressing;
  if (!sane) {
    a.tier = Tier::kSuspect;
    a.wait_us = unread;
    return a;
  }
  if (!awake && pending == 0) {
    uint64_t since_sent = 0;
    // Only while it holds a connection: one whose connections have all closed has no
    // request to come that could block (a client making one request per connection would
    // otherwise be sent to every worker in turn, each woken cold).
    a.fresh = open > 0 && w.sent_ever && Elapsed(now.us, w.sent_at_us, &since_sent) && since_sent < kFreshUs;
    a.tier = Tier::kFree;
    a.idle_us = since_change > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(since_change);
    return a;
  }
  // Finishing: a loop awake only briefly, with no request in flight and nothing sent to it
  // unread, is on its way back to poll: it reads what we send on its next poll, warm and
  // without a wake-up of its own, where a sleeping worker would be woken cold. One client
  // making a request per connection shows why it matters: its next connection arrives while
  // the worker that answered the last one is still closing it, and sending it to the other
  // (asleep) worker made the two take turns, each woken cold for every request. So it counts
  // as free, asleep for 0 µs (the warmest), and the connection it just answered, usually on
  // its way out, does not count as load. Only once it has answered a request since our last
  // send (that connection's request came; what it holds no longer waits for one). No
  // request in flight is what keeps a loop 300 µs into a 200 ms handler out of this, and
  // holding no other connection keeps it to light load: a loop with more connections may find
  // more of their requests on its next poll, and under load (8 workers on 2 cores, -c64)
  // sending to such loops instead of sleeping ones cost 12% of the throughput. Only at light
  // load (Options::light): in a burst, where connections arrive many to a round, the tiers
  // decide as they always did.
  // A loop that has just been sent a connection whose request has not been answered yet stays
  // prompt, as before: that request may still come and block (and in a burst every loop looks
  // like this: ranking it free would put it ahead of loops merely busy reading theirs).
  if (o.light && awake && pending == 0 && in_flight == 0 && open <= 1 && since_change <= kFinishingUs) {
    uint64_t since_sent = 0;
    bool fresh = open > 0 && w.sent_ever && !w.served_since_sent && Elapsed(now.us, w.sent_at_us, &since_sent) &&
                 since_sent < kFreshUs;
    if (!fresh) {
      a.tier = Tier::kFree;
      a.idle_us = 0;
      a.load = 0;
      return a;
    }
  }
  // Answering: the same, but with the one request we sent it still in flight. One client's
  // next connection often arrives before the worker's response has finished ('finish' comes a
  // loop turn after the write; wrk reads the response and reconnects first): sending it to a
  // sleeping worker then wakes one that has served little, its code cold (~1% of one client's
  // connections: the p98-p99 of a two-worker pool). The same view is a loop 100 µs into a
  // 200 ms handler; so only with the hedge on, which takes a connection left unread back
  // after kHedgeUs (1 ms) for a sleeping worker, instead of the 5 ms a stall otherwise costs.
  // Never with a request read but not yet started (fresh, nothing in flight): a connection we
  // send would be read in the same turn and could wait behind it, beyond any taking back.
  // Pick() also needs a worker asleep for the hedge to hand it to, or it does not apply.
  if (o.light && o.hedge && awake && pending == 0 && in_flight == 1 && open == 1 && since_change <= kFinishingUs) {
    a.tier = Tier::kFree;
    a.idle_us = 0;
    a.load = 0;
    a.answering = true;
    return a;
  }
  uint64_t busy = awake ? since_change : 0;
  uint64_t held = busy > unread ? busy : unread;
  a.wait_us = held + static_cast<uint64_t>(pending) * kPendingCostUs;
  a.held_us = held;
  a.tier = held <= o.avoid_us ? Tier::kPrompt : Tier::kSlow;
  return a;
}

// True when `a` should be chosen over `b` (same tier assumed by the caller).
inline bool Better(const Assessment& a, const Assessment& b) {
  switch (a.tier) {
    case Tier::kFree:
      if (a.fresh != b.fresh) return !a.fresh;
      if (a.load != b.load) return a.load < b.load;
      return a.idle_us < b.idle_us;
    case Tier::kPrompt: {
      if (a.pending != b.pending) return a.pending < b.pending;
      // Awake briefly is ambiguous: finishing a response, or 300 µs into a 200 ms handler. A
      // loop with no request in flight is not in a handler, so it is the safer of the two.
      if (a.in_handler != b.in_handler) return !a.in_handler;
      uint64_t qa = a.wait_us / kWaitBucketUs, qb = b.wait_us / kWaitBucketUs;
      if (qa != qb) return qa < qb;
      return a.load < b.load;
    }
    case Tier::kSlow:
      // Held the shortest first: a loop stuck in a long handler falls behind one that merely
      // has not been scheduled yet, however many connections wait for the latter.
      if (a.held_us / kWaitBucketUs != b.held_us / kWaitBucketUs) return a.held_us < b.held_us;
      if (a.pending != b.pending) return a.pending < b.pending;
      return a.load < b.load;
    default:
      if (a.wait_us != b.wait_us) return a.wait_us < b.wait_us;
      return a.load < b.load;
  }
}

// Index of the chosen worker, or -1 when none can take a connection. Ties go to the first
// in round-robin order from `start`.
// `bound`: how long a loop may have been held and still count as a place to spread to.
inline bool Spreadable(const Assessment& a, uint64_t bound) {
  return a.tier == Tier::kFree || a.tier == Tier::kPrompt || (a.tier == Tier::kSlow && a.held_us < bound);
}

// Whether no more than `unread` connections wait unread in the whole pool: light load as the
// hedge needs it. A round of one connection alone is not enough: 8 workers on 2 cores at -c64
// make rounds of one too, with connections waiting in half the channels, and hedging there
// took back nearly every other connection (a worker slow to be scheduled then is not stuck).
inline bool Quiet(const WorkerView* workers, size_t n, int64_t unread) {
  int64_t total = 0;
  for (size_t j = 0; j < n; j++) total += workers[j].pending > 0 ? workers[j].pending : 0;
  return total <= unread;
}

// Whether a worker other than `i` is asleep in poll with nothing sent to it lately: where the
// hedge (steal-policy.h) can hand what `i` leaves unread.
inline bool HedgeTaker(const WorkerView* workers, size_t n, size_t i, Clock now) {
  Options o;  // not light: a finishing or answering loop is not asleep
  for (size_t j = 0; j < n; j++) {
    if (j == i) continue;
    Assessment a = Assess(workers[j], o, now);
    if (a.tier == Tier::kFree && !a.fresh) return true;
  }
  return false;
}

inline int Pick(const WorkerView* workers, size_t n, const Options& o, Clock now, size_t start) {
  if (o.light && o.hedge) {
    // An answering loop counts as free only while the hedge could take a connection back:
    // nothing else waits unread in the pool, and another worker sleeps.
    Options plain = o;
    plain.hedge = false;
    if (!Quiet(workers, n, 0)) return Pick(workers, n, plain, now, start);
    for (size_t i = 0; i < n; i++)
      if (Assess(workers[i], o, now).answering && !HedgeTaker(workers, n, i, now))
        return Pick(workers, n, plain, now, start);
  }
  int best = -1;
  Assessment best_a;
  for (size_t k = 0; k < n; k++) {
    size_t i = (start + k) % n;
    Assessment a = Assess(workers[i], o, now);
    if (a.tier == Tier::kNone) continue;
    if (best < 0 || a.tier < best_a.tier || (a.tier == best_a.tier && Better(a, best_a))) {
      best = static_cast<int>(i);
      best_a = a;
    }
  }
  if (best < 0 || best_a.holds < (best_a.lasting ? kSpreadFromLasting : kSpreadFrom)) return best;
  // 5. Spread. When every worker is slow (a burst on a loaded machine keeps each loop awake
  // for tens of ms), the one chosen is slow too: any loop held not much longer is as good.
  uint64_t bound = kSpreadStallUs;
  if (best_a.tier == Tier::kSlow && best_a.held_us * 2 > bound) bound = best_a.held_us * 2;
  // Spreading only because what it holds is lasting (under kSpreadFrom): to a loop held past
  // avoid_us only while it makes progress (reads connections or answers requests: a burst
  // keeps every loop busy), never to one held in a single handler (a loop 5 ms into a 1.5 s
  // handler gets none of 40 connections arriving at once).
  bool lasting_only = best_a.holds < kSpreadFrom;
  int least = -1;
  Assessment least_a;
  for (size_t k = 0; k < n; k++) {
    size_t i = (start + k) % n;
    Assessment a = Assess(workers[i], o, now);
    if (a.tier == Tier::kNone || !Spreadable(a, bound)) continue;
    if (lasting_only && a.tier == Tier::kSlow && a.in_handler && !a.progressing) continue;
    // Among equals, the better tier, then the better by that tier's own order.
    if (least < 0 || a.holds < least_a.holds ||
        (a.holds == least_a.holds && (a.tier < least_a.tier || (a.tier == least_a.tier && Better(a, least_a))))) {
      least = static_cast<int>(i);
      least_a = a;
    }
  }
  if (least >= 0 && best_a.holds > least_a.holds + SpreadSlack(least_a.holds)) return least;
  return best;
}

}  // namespace placement
}  // namespace herdless
