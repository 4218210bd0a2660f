// rfc6455.js: a browser client for `rfc6455 serve --app pubsub` (docs/protocol.md).
//
// Plain JavaScript, no dependencies, no build step:
//
//   const ps = new RFC6455PubSub("ws://127.0.0.1:8765/", {
//     onMessage(topic, payload, meta) {},   // meta: {offset, epoch, ts}
//     onJoin(topic, who) {}, onLeave(topic, who) {},
//     onStatus(state, detail) {},           // connecting | open | reconnecting | recovered | closed
//     onResync(topic, info) {},             // history lost: {recovered: false, offset, epoch, previous, missed}
//     onError(error) {},                    // an error that answers no pending request
//   });
//   await ps.subscribe("chat");
//   await ps.publish("chat", {text: "hi"});   // resolves with the ack's data, rejects with the error's
//
// Every request carries an id and its promise settles on the matching ack or error. The
// client reconnects by itself (exponential backoff, full jitter) and resubscribes every
// topic with `since` = the last offset/epoch it delivered, so a short outage loses nothing:
// the server replays what was missed, and anything already delivered (offset <= last seen
// in the same epoch) is dropped. When the server cannot replay, the ack says
// `recovered: false` and onResync is called: never a silent skip.
"use strict";

class RFC6455PubSub {
  static SUBPROTOCOL = "rfc6455.json.v1";

  constructor(url, options = {}) {
    this.url = url;
    this.options = Object.assign({
      onMessage() {}, onJoin() {}, onLeave() {}, onStatus() {}, onResync() {}, onError() {},
      backoffInitial: 500,     // ms: the first retry waits up to this long
      backoffMax: 15000,       // ms: and no retry waits longer than this
      requestTimeout: 10000,   // ms: a request without an answer by then is rejected
      heartbeat: 25000,        // ms between pings while idle (0: none); a lost pong reconnects
    }, options);
    this.state = "idle";
    this.ws = null;
    this.topics = new Map();   // topic -> {offset, epoch} of the last message delivered (or null)
    this._pending = new Map(); // request id -> {resolve, reject, timer, request}
    this._queue = [];          // requests waiting for an open connection
    this._waiters = [];        // subscribe() promises: {topic, resolve, reject}
    this._nextId = 1;
    this._attempt = 0;
    this._retryTimer = null;
    this._heartbeatTimer = null;
    this._closed = false;
    this._connect();
  }

  // -- public API ----------------------------------------------------------------------

  /** Subscribe to `topic`, kept across reconnects. Resolves with the ack's data once the
   *  server has it (after a reconnect if need be); rejects if the server refuses. */
  subscribe(topic) {
    const known = this.topics.has(topic);
    if (!known) this.topics.set(topic, null);
    const position = this.topics.get(topic);
    if (known && position && this.state === "open") {
      return Promise.resolve({topic, offset: position.offset, epoch: position.epoch});
    }
    const promise = new Promise((resolve, reject) => {
      this._waiters.push({topic, resolve, reject});
    });
    // Not open: onopen subscribes every topic. Known: the position is kept (no new request).
    if (this.state === "open" && !known) this._resubscribe(topic);
    return promise;
  }

  /** Stop receiving `topic` and forget its position. */
  unsubscribe(topic) {
    this.topics.delete(topic);
    this._settle(topic, null, {code: "unsubscribed", message: topic, temporary: false});
    return this.request("unsubscribe", {topic});
  }

  /** Publish any JSON value; resolves with {topic, offset, epoch}. */
  publish(topic, payload) {
    return this.request("publish", {topic, payload});
  }

  /** The kept history of `topic`: {offset, epoch, messages: [{offset, payload, ts}], complete}. */
  history(topic, {since, limit} = {}) {
    const data = {topic};
    if (since) data.since = since;
    if (limit !== undefined) data.limit = limit;
    return this.request("history", data);
  }

  /** Who is subscribed to `topic`: {count, clients: [{client, user?}]}. */
  presence(topic) {
    return this.request("presence", {topic});
  }

  /** Close for good: no reconnect; pending requests are rejected. */
  close() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    this._stopHeartbeat();
    if (this.ws) this.ws.close(1000, "bye");
    const error = {code: "closed", message: "client closed", temporary: false};
    this._failAll(error);
    for (const topic of this.topics.keys()) this._settle(topic, null, error);
    this._setState("closed", {});
  }

  /** Send one request; resolves with the ack's data, rejects with the error's data. */
  request(type, data = {}) {
    const id = String(this._nextId++);
    return new Promise((resolve, reject) => {
      const entry = {resolve, reject, timer: null, text: JSON.stringify({v: 1, type, id, data})};
      entry.timer = setTimeout(() => {
        this._pending.delete(id);
        this._queue = this._queue.filter((e) => e !== entry);
        reject({code: "timeout", message: `no answer to ${type} within ` +
                `${this.options.requestTimeout} ms`, temporary: true});
      }, this.options.requestTimeout);
      this._pending.set(id, entry);
      if (this.state === "open") this.ws.send(entry.text);
      else this._queue.push(entry);
    });
  }

  // -- connection --------------------------------------------------------------------

  _setState(state, detail) {
    this.state = state;
    this.options.onStatus(state, detail);
  }

  _connect() {
    this._setState("connecting", {attempt: this._attempt});
    let ws;
    try {
      ws = new WebSocket(this.url, [RFC6455PubSub.SUBPROTOCOL]);
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this._attempt = 0;
      this._setState("open", {protocol: ws.protocol});
      for (const topic of this.topics.keys()) {
        this._resubscribe(topic);
      }
      const queued = this._queue;
      this._queue = [];
      for (const entry of queued) ws.send(entry.text);
      this._startHeartbeat();
    };
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._stopHeartbeat();
      // Requests in flight may or may not have been carried out: say so, do not resend.
      this._failAll({code: "disconnected", message: `connection closed (${event.code})`,
                     temporary: true}, true);
      if (!this._closed) this._scheduleReconnect();
    };
  }

  _scheduleReconnect() {
    // Full jitter: anywhere between 0 and the exponential bound, so that clients cut off
    // together do not come back together.
    const bound = Math.min(this.options.backoffMax,
                           this.options.backoffInitial * 2 ** this._attempt);
    const delay = Math.round(Math.random() * bound);
    this._attempt += 1;
    this._setState("reconnecting", {delay, attempt: this._attempt, at: Date.now() + delay});
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _failAll(error, inFlightOnly = false) {
    const queued = new Set(this._queue);
    for (const [id, entry] of this._pending) {
      if (inFlightOnly && queued.has(entry)) continue;
      clearTimeout(entry.timer);
      this._pending.delete(id);
      entry.reject(error);
    }
    if (!inFlightOnly) this._queue = [];
  }

  _startHeartbeat() {
    if (!this.options.heartbeat) return;
    const ws = this.ws;
    this._heartbeatTimer = setInterval(() => {
      const timer = setTimeout(() => ws.close(4000, "heartbeat timeout"),
                               this.options.requestTimeout);
      const id = "hb" + this._nextId++;
      this._pending.set(id, {timer, resolve() {}, reject() {}});
      ws.send(JSON.stringify({v: 1, type: "ping", id}));
    }, this.options.heartbeat);
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  // -- subscriptions and recovery ------------------------------------------------------

  _settle(topic, ack, error) {
    const waiting = this._waiters.filter((w) => w.topic === topic);
    this._waiters = this._waiters.filter((w) => w.topic !== topic);
    for (const w of waiting) {
      if (error) w.reject(error);
      else w.resolve(ack);
    }
  }

  _resubscribe(topic) {
    this._subscribe(topic).then((ack) => this._settle(topic, ack, null), (error) => {
      if (error.code === "disconnected") return;  // again on the next connection
      if (!error.temporary) this.topics.delete(topic);
      this._settle(topic, null, error);
      this.options.onError(error);
    });
  }

  _subscribe(topic) {
    const since = this.topics.get(topic);
    const data = since ? {topic, since: {offset: since.offset, epoch: since.epoch}} : {topic};
    return this.request("subscribe", data).then((ack) => {
      if (!this.topics.has(topic)) return ack;   // unsubscribed meanwhile
      if (!since) {
        // New subscription: everything after ack.offset will come as messages.
        this.topics.set(topic, {offset: ack.offset, epoch: ack.epoch});
      } else if (ack.recovered) {
        // The replay (offsets <= ack.offset) follows the ack and moves the position.
        this.options.onStatus("recovered", {topic, replayed: ack.replayed || 0});
      } else {
        const missed = since.epoch === ack.epoch && ack.offset >= since.offset
          ? ack.offset - since.offset : null;
        this.topics.set(topic, {offset: ack.offset, epoch: ack.epoch});
        this.options.onResync(topic, {recovered: false, offset: ack.offset, epoch: ack.epoch,
                                      previous: since, missed});
      }
      return ack;
    });
  }

  _deliver(data, ts) {
    const {topic, offset, epoch} = data;
    if (!this.topics.has(topic)) return;           // a late message after unsubscribe
    const last = this.topics.get(topic);
    if (last && last.epoch === epoch) {
      if (offset <= last.offset) return;           // seen already: drop the duplicate
      if (offset > last.offset + 1) {
        // The server promises no gap; if one shows up anyway, say so.
        this.options.onResync(topic, {recovered: false, offset: offset - 1, epoch,
                                      previous: last, missed: offset - 1 - last.offset});
      }
    } else if (last) {
      this.options.onResync(topic, {recovered: false, offset: offset - 1, epoch,
                                    previous: last, missed: null});
    }
    this.topics.set(topic, {offset, epoch});
    this.options.onMessage(topic, data.payload, {offset, epoch, ts});
  }

  _receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      return;
    }
    const data = msg.data || {};
    switch (msg.type) {
      case "message":
        this._deliver(data, msg.ts);
        return;
      case "join":
        this.options.onJoin(data.topic, data.client);
        return;
      case "leave":
        this.options.onLeave(data.topic, data.client);
        return;
      case "ack":
      case "pong":
      case "error": {
        const entry = msg.re !== undefined ? this._pending.get(msg.re) : undefined;
        if (entry) {
          this._pending.delete(msg.re);
          clearTimeout(entry.timer);
          if (msg.type === "error") entry.reject(data);
          else entry.resolve(data);
        } else if (msg.type === "error") {
          // An error for no request: a subscription interrupted on the server (it names
          // the topic and has dropped us from it), or a request sent without an id.
          if (data.topic && this.topics.has(data.topic) && this.state === "open") {
            this._resubscribe(data.topic);
          }
          this.options.onError(data);
        }
        return;
      }
      default:
        return;                                    // unknown types: ignored (protocol.md)
    }
  }
}

if (typeof window !== "undefined") window.RFC6455PubSub = RFC6455PubSub;
if (typeof module !== "undefined") module.exports = RFC6455PubSub;
