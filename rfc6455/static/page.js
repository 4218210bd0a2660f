// The live page: a chat / live feed on one topic, over rfc6455.js.
// State for scripts and tests: window.pubsubPage = {client, topic, messages, status}.
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  const params = new URLSearchParams(location.search);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const page = {client: null, topic: params.get("topic") || "chat", messages: [], status: ""};
  window.pubsubPage = page;

  const list = $("#messages");
  const status = $("#status");
  $("#topic").value = page.topic;
  $("#name").value = params.get("name") || "guest-" + Math.floor(Math.random() * 9000 + 1000);

  function line(className, parts) {
    const li = document.createElement("li");
    li.className = className;
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.append(span);
    }
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(li);
    if (atBottom) list.scrollTop = list.scrollHeight;
    return li;
  }

  let countdown = null;
  function showStatus(state, text) {
    clearInterval(countdown);
    countdown = null;
    status.dataset.state = state;
    status.textContent = page.status = text;
  }

  function who(client) {
    return client.user || "client " + String(client.client).slice(0, 6);
  }

  function refreshPresence() {
    if (page.client.state !== "open") return;
    const topic = page.topic;
    page.client.presence(topic).then((p) => {
      if (topic === page.topic) $("#presence").textContent = `${p.count} here`;
    }, () => {});
  }

  page.client = new RFC6455PubSub(`${scheme}://${location.host}/`, {
    onMessage(topic, payload, meta) {
      if (topic !== page.topic) return;
      const text = payload && typeof payload === "object" && "text" in payload
        ? String(payload.text) : JSON.stringify(payload);
      const from = payload && typeof payload === "object" && payload.from
        ? String(payload.from) : "";
      page.messages.push({offset: meta.offset, epoch: meta.epoch, from, text});
      const li = line("msg", [["offset", `#${meta.offset}`], ["from", from], ["text", text]]);
      li.dataset.offset = meta.offset;
      li.dataset.epoch = meta.epoch;
    },
    onJoin(topic, client) {
      if (topic !== page.topic) return;
      line("note", [["", `${who(client)} joined`]]);
      refreshPresence();
    },
    onLeave(topic, client) {
      if (topic !== page.topic) return;
      line("note", [["", `${who(client)} left`]]);
      refreshPresence();
    },
    onStatus(state, detail) {
      if (state === "open") {
        showStatus("open", "connected");
      } else if (state === "connecting") {
        showStatus("connecting", "connecting…");
      } else if (state === "reconnecting") {
        const tick = () => {
          const left = Math.max(0, Math.ceil((detail.at - Date.now()) / 1000));
          status.textContent = page.status = `reconnecting in ${left} s`;
        };
        showStatus("reconnecting", "");
        tick();
        countdown = setInterval(tick, 250);
      } else if (state === "recovered" && detail.topic === page.topic) {
        const n = detail.replayed;
        showStatus("open", `connected: recovered ${n} missed message${n === 1 ? "" : "s"}`);
      } else if (state === "closed") {
        showStatus("closed", "closed");
      }
    },
    onResync(topic, info) {
      if (topic !== page.topic) return;
      const lost = info.missed === null ? "some" : String(info.missed);
      showStatus("resynced", `connected: resynced, ${lost} message(s) could not be recovered`);
      line("note resync", [["", `— ${lost} message(s) missed and no longer kept by the server —`]]);
    },
  });

  function subscribe(topic) {
    page.topic = topic;
    page.messages = [];
    list.replaceChildren();
    $("#presence").textContent = "";
    page.client.subscribe(topic).then(refreshPresence, (err) => {
      line("note resync", [["", `cannot subscribe to ${topic}: ${err.message}`]]);
    });
  }

  $("#topic-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const topic = $("#topic").value.trim();
    if (!topic || topic === page.topic) return;
    page.client.unsubscribe(page.topic).catch(() => {});
    subscribe(topic);
  });

  $("#send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#text");
    const text = input.value;
    if (!text) return;
    page.client.publish(page.topic, {from: $("#name").value, text}).then(
      () => { input.value = ""; },
      (err) => line("note resync", [["", `not sent (${err.code}): ${err.message}`]]),
    );
  });

  // Presence without join/leave announcements (topics not in --join-leave): poll it.
  setInterval(refreshPresence, 10000);
  subscribe(page.topic);
})();
