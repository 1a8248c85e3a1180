// The console's one script, served from /static/console.js under a policy
// that allows no other: as an operator types a new silence's matchers, it
// shows how many of the last day's notifications they would have held.
// Without it the form's "Count" button does the same.
(() => {
  const field = document.querySelector('#new-silence input[name=matchers]');
  const shown = document.getElementById('would-hold');
  if (!field || !shown) return;
  let timer;
  let asked = 0;
  const show = (text, problem) => {
    shown.textContent = text;
    shown.classList.toggle('problem', problem);
  };
  field.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      // Only the answer to the latest question is shown.
      const question = ++asked;
      if (field.value.trim() === '') {
        show('', false);
        return;
      }
      const query = new URLSearchParams({ matchers: field.value });
      try {
        const answer = await fetch('/silences/count?' + query, { credentials: 'same-origin', redirect: 'manual' });
        const text = await answer.text();
        if (question !== asked) return;
        if (answer.type === 'opaqueredirect') {
          show('The session ended: reload the page to log in again.', true);
        } else {
          show(text, !answer.ok);
        }
      } catch (_) {
        if (question === asked) show('The count could not be fetched.', true);
      }
    }, 300);
  });
})();
