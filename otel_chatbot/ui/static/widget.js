/* otel-chatbot feedback widget: thumbs up/down next to a bot reply, posted to /v1/feedback.
 *
 *   <div data-otel-chatbot-turn="TURN_ID"></div>
 *   <script src="https://otel.example.com/ui/widget.js" data-endpoint="https://otel.example.com"
 *           data-token="OPTIONAL_BEARER_TOKEN" defer></script>
 *
 * Plain JavaScript, no build step, no dependencies. Elements added later (a chat that streams new
 * replies) are picked up by a MutationObserver; window.otelChatbotFeedback.scan() does it by hand.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var attr = function (name) { return script ? script.getAttribute(name) : null; };
  var base = attr("data-endpoint") || (script && script.src ? new URL(script.src).origin : "");
  var endpoint = base.replace(/\/+$/, "") + "/v1/feedback";
  var token = attr("data-token");
  var MAX_COMMENT = 2000;

  function addStyle() {
    if (document.getElementById("otel-chatbot-fb-style")) return;
    var style = document.createElement("style");
    style.id = "otel-chatbot-fb-style";
    style.textContent =
      ".otel-chatbot-fb{display:inline-flex;gap:6px;align-items:center;font:13px system-ui,sans-serif;color:#4b5563}" +
      ".otel-chatbot-fb button{border:1px solid #d1d5db;background:#fff;color:#4b5563;border-radius:6px;padding:2px 8px;cursor:pointer;font:inherit}" +
      ".otel-chatbot-fb .otel-chatbot-fb-thumb{line-height:0;padding:5px 8px}" +
      ".otel-chatbot-fb button:hover{background:#f3f4f6}.otel-chatbot-fb button[disabled]{opacity:.5;cursor:default}" +
      ".otel-chatbot-fb .otel-chatbot-fb-error{color:#c2352b}.otel-chatbot-fb .otel-chatbot-fb-thanks{color:#2f855a}" +
      ".otel-chatbot-fb input{font:inherit;padding:2px 6px;border:1px solid #d1d5db;border-radius:6px;width:16em}";
    document.head.appendChild(style);
  }

  // A thumb drawn as an inline SVG (no emoji font or image file needed); "down" is it turned over.
  var SVG = "http://www.w3.org/2000/svg";
  function thumb(down) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    var group = document.createElementNS(SVG, "g");
    group.setAttribute("fill", "currentColor");
    if (down) group.setAttribute("transform", "rotate(180 12 12)");
    var cuff = document.createElementNS(SVG, "rect");
    cuff.setAttribute("x", "2"); cuff.setAttribute("y", "10"); cuff.setAttribute("width", "4");
    cuff.setAttribute("height", "11"); cuff.setAttribute("rx", "1");
    var hand = document.createElementNS(SVG, "path");
    hand.setAttribute("d", "M8 10 L12 3 C13.5 3 14.5 4.2 14 6 L13 10 H20 C21.2 10 22 11 21.7 12.2 " +
                           "L19.8 19.5 C19.5 20.4 18.8 21 17.9 21 H8 Z");
    group.appendChild(cuff);
    group.appendChild(hand);
    svg.appendChild(group);
    return svg;
  }

  function button(label, content, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    if (typeof content === "string") b.textContent = content;
    else { b.appendChild(content); b.className = "otel-chatbot-fb-thumb"; }
    b.setAttribute("aria-label", label);
    b.title = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function send(turnId, rating, comment) {
    var headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    var body = { turn_id: turnId, rating: rating };
    if (comment) body.comment = comment;
    return fetch(endpoint, { method: "POST", headers: headers, body: JSON.stringify(body), mode: "cors",
                             credentials: "omit" })
      .then(function (response) {
        if (response.ok) return response;
        return response.text().then(function (text) {
          var message = text;
          try { message = JSON.parse(text).message || text; } catch (e) { /* not JSON */ }
          throw new Error("HTTP " + response.status + (message ? ": " + message : ""));
        });
      });
  }

  function mount(el) {
    var turnId = el.getAttribute("data-otel-chatbot-turn");
    if (!turnId || el.getAttribute("data-otel-chatbot-state")) return;
    el.setAttribute("data-otel-chatbot-state", "ready");
    el.classList.add("otel-chatbot-fb");
    var status = document.createElement("span");
    status.setAttribute("role", "status");
    var up, down;

    function busy(on) { up.disabled = on; down.disabled = on; }
    function fail(error) {
      busy(false);
      el.setAttribute("data-otel-chatbot-state", "error");
      status.className = "otel-chatbot-fb-error";
      status.setAttribute("role", "alert");
      status.textContent = "Feedback not sent (" + (error && error.message ? error.message : "network error") + ")";
    }
    function thanks(rating) {
      el.setAttribute("data-otel-chatbot-state", "sent-" + rating);
      status.className = "otel-chatbot-fb-thanks";
      status.setAttribute("role", "status");
      status.textContent = "Thanks for your feedback!";
      up.hidden = down.hidden = true;
      if (rating === "down") askComment();
    }
    function askComment() {
      var input = document.createElement("input");
      input.placeholder = "What went wrong? (optional)";
      input.maxLength = MAX_COMMENT;
      var go = button("Send comment", "Send", function () {
        if (!input.value.trim()) return;
        go.disabled = true;
        send(turnId, "down", input.value.trim()).then(function () {
          input.remove(); go.remove();
          el.setAttribute("data-otel-chatbot-state", "commented");
          status.textContent = "Thanks, we'll look into it.";
        }, function (error) { go.disabled = false; fail(error); });
      });
      el.appendChild(input);
      el.appendChild(go);
    }
    function rate(rating) {
      return function () {
        busy(true);
        status.textContent = "";
        send(turnId, rating).then(function () { thanks(rating); }, fail);
      };
    }
    up = button("Good answer", thumb(false), rate("up"));
    down = button("Bad answer", thumb(true), rate("down"));
    el.appendChild(up);
    el.appendChild(down);
    el.appendChild(status);
  }

  function scan(root) {
    var scope = root || document;
    var nodes = scope.querySelectorAll("[data-otel-chatbot-turn]");
    for (var i = 0; i < nodes.length; i++) mount(nodes[i]);
  }

  function start() {
    addStyle();
    scan(document);
    if (window.MutationObserver) {
      new MutationObserver(function () { scan(document); })
        .observe(document.body, { childList: true, subtree: true });
    }
  }

  window.otelChatbotFeedback = { scan: scan, endpoint: endpoint };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
