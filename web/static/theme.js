// Bedside theme: dark by default at night (19:00 to 07:00 local), light by day, unless the
// user chose one with the toggle (kept in localStorage). Runs in <head> so there is no flash.
"use strict";

(function () {
  const KEY = "bedside-theme";
  function chosen() {
    try {
      return window.localStorage.getItem(KEY);
    } catch (err) {
      return null;
    }
  }
  function byClock() {
    const hour = new Date().getHours();
    return hour >= 19 || hour < 7 ? "dark" : "light";
  }
  function apply(theme) {
    document.documentElement.dataset.theme = theme;
  }
  apply(chosen() || byClock());
  document.addEventListener("DOMContentLoaded", function () {
    const button = document.getElementById("theme-toggle");
    if (!button) {
      return;
    }
    button.addEventListener("click", function () {
      const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      apply(next);
      try {
        window.localStorage.setItem(KEY, next);
      } catch (err) {
        // private mode: the choice lasts for this page only
      }
    });
  });
})();
