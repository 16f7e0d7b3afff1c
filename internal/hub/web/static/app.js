// LeadMaster web UI: progressive enhancement only. Every page works without this file; with
// it, what changes by itself (WhatsApp state and QR, campaign progress, new messages) updates
// in place by polling small JSON answers, and the campaign form shows a live preview.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

  // Ask before destructive actions (forms with data-confirm).
  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      ev.preventDefault();
    }
  });

  // poll calls fn every `every` ms (slower while the tab is hidden) until fn returns false.
  // A 401 means the session ended: reloading shows the login page.
  function poll(url, every, fn, accept) {
    let stopped = false;
    async function tick() {
      let again = true;
      try {
        const r = await fetch(url(), { credentials: "same-origin", headers: { Accept: accept || "application/json" } });
        if (r.status === 401) { window.location.reload(); return; }
        if (r.ok) {
          again = fn(accept ? await r.text() : await r.json()) !== false;
        }
      } catch (e) { /* the hub restarted or the network blinked: try again */ }
      if (again && !stopped) {
        setTimeout(tick, document.hidden ? every * 4 : every);
      }
    }
    setTimeout(tick, every);
    return function () { stopped = true; };
  }

  function setBadge(el, label, cls) {
    if (!el) return;
    el.textContent = label;
    el.className = "badge " + cls;
  }

  // Link page: state, rotating QR, and the switch to "linked as ..." when the phone scans.
  const link = document.querySelector("[data-poll-link]");
  if (link) {
    const img = document.getElementById("qr-image");
    const byId = (id) => document.getElementById(id);
    poll(() => link.dataset.pollLink + "?known=" + encodeURIComponent(img.dataset.qr || ""), 1500, function (s) {
      link.dataset.state = s.state;
      setBadge(byId("link-label"), s.label, s.class);
      byId("panel-linked").hidden = s.state !== "connected";
      byId("panel-qr").hidden = s.state !== "qr";
      byId("pair").hidden = s.state === "connected";
      if (s.state === "connected") byId("linked-text").textContent = s.linked;
      if (s.qr) {
        if (s.qr !== img.dataset.qr && s.qr_image) {
          img.src = s.qr_image;
          img.dataset.qr = s.qr;
        }
        img.hidden = false;
      } else if (s.state !== "qr") {
        img.dataset.qr = "";
      }
      const hint = byId("link-hint");
      hint.textContent = s.hint || "";
      hint.hidden = !s.hint;
      const err = byId("link-error");
      err.textContent = s.error || "";
      err.hidden = !s.error;
    });
  }

  // Clientes page: state, linked number and queue of every row.
  const clientes = document.querySelector("[data-poll-clientes]");
  if (clientes) {
    poll(() => clientes.dataset.pollClientes, 5000, function (d) {
      for (const c of d.clientes) {
        const row = clientes.querySelector('tr[data-cliente="' + CSS.escape(c.id) + '"]');
        if (!row) continue;
        setBadge(row.querySelector('[data-field="label"]'), c.label, c.class);
        const detail = row.querySelector('[data-field="detail"]');
        if (detail) detail.textContent = c.detail || "";
        const phone = row.querySelector('[data-field="phone"]');
        if (phone) phone.textContent = c.phone || "—";
        const queue = row.querySelector('[data-field="queue"]');
        if (queue) queue.textContent = c.queue >= 0 ? String(c.queue) : "—";
      }
    });
  }

  const finished = (st) => st === "done" || st === "cancelled";

  // Campaign page: state, progress bar, counts and the actions the state allows.
  const campaign = document.querySelector("[data-poll-campaign]");
  if (campaign) {
    poll(() => campaign.dataset.pollCampaign, 1000, function (s) {
      campaign.dataset.state = s.state;
      setBadge(document.getElementById("campaign-label"), s.label, s.class);
      document.getElementById("campaign-progress-text").textContent = s.progress;
      const bar = document.getElementById("campaign-progress");
      bar.value = s.pct;
      bar.textContent = s.pct + " %";
      const finish = document.getElementById("campaign-finish");
      finish.textContent = s.finish || "";
      finish.hidden = !s.finish;
      for (const c of s.counts) {
        const dd = campaign.querySelector('[data-count="' + c.State + '"]');
        if (dd) dd.textContent = String(c.N);
      }
      for (const form of campaign.querySelectorAll("form[data-action]")) {
        form.hidden = s.actions.indexOf(form.dataset.action) < 0;
      }
      return !(finished(s.state) && s.pct >= 100);
    });
  }

  // Campaign list: progress of every row.
  const campaigns = document.querySelector("[data-poll-campaigns]");
  if (campaigns) {
    poll(() => campaigns.dataset.pollCampaigns, 3000, function (d) {
      for (const c of d.campaigns) {
        const row = campaigns.querySelector('tr[data-campaign="' + c.id + '"]');
        if (!row) continue;
        setBadge(row.querySelector('[data-field="label"]'), c.label, c.class);
        row.querySelector("progress").value = c.pct;
        row.querySelector('[data-field="progress"]').textContent = c.progress;
      }
    });
  }

  // New campaign: live preview of the message for real leads while typing.
  const form = document.querySelector("form[data-preview]");
  if (form) {
    let timer = null;
    let seq = 0;
    const body = document.getElementById("preview-body");
    async function refresh() {
      const mine = ++seq;
      const data = new URLSearchParams(new FormData(form));
      data.delete("action");
      try {
        const r = await fetch(form.dataset.preview, {
          method: "POST", credentials: "same-origin", body: data,
          headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        });
        if (r.status === 401) { window.location.reload(); return; }
        if (!r.ok || mine !== seq) return;
        render(await r.json());
      } catch (e) { /* keep the last preview */ }
    }
    function render(p) {
      body.replaceChildren();
      const summary = document.createElement("p");
      summary.id = "preview-summary";
      summary.textContent = p.summary || "";
      body.append(summary);
      if (p.error) {
        const err = document.createElement("p");
        err.id = "preview-error";
        err.className = "error-text";
        err.textContent = p.error;
        body.append(err);
      }
      const list = document.createElement("ul");
      list.id = "preview-samples";
      list.className = "samples";
      for (const s of p.samples) {
        const li = document.createElement("li");
        const meta = document.createElement("p");
        meta.className = "meta small";
        meta.textContent = s.to + (s.name ? " · " + s.name : "");
        const bubble = document.createElement("p");
        bubble.className = "bubble";
        bubble.textContent = s.text;
        li.append(meta, bubble);
        list.append(li);
      }
      body.append(list);
    }
    const later = function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 300);
    };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    const button = form.querySelector("button[data-nojs]");
    if (button) {
      button.addEventListener("click", function (ev) { ev.preventDefault(); refresh(); });
    }
    if (form.elements.template && form.elements.template.value.trim() !== "") refresh();
  }

  // Conversation: new messages appear by themselves.
  const thread = document.querySelector("[data-poll-thread]");
  if (thread) {
    let last = thread.innerHTML;
    poll(() => thread.dataset.pollThread, 4000, function (html) {
      if (html !== last) {
        thread.innerHTML = html;
        last = html;
      }
    }, "text/html");
  }
})();
