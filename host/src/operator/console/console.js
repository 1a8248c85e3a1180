// The console's one script, served from /static/console.js under a policy
// that allows no other: as an operator types a new silence's matchers, it
// shows how many of the last day's notifications they would have held.
// Without it the form's "Count" button does the same.
(() => {
  const field = document.querySelector('#new-silence input[name=matchers]');
  const shown = document.getElementById('would-hold');
  if (!field || !shown) return;
  let timer;
  field.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (field.value.trim() === '') {
        shown.textContent = '';
        return;
      }
      const query = new URLSearchParams({ matchers: field.value });
      try {
        const answer = await fetch('/silences/count?' + query, { credentials: 'same-origin' });
        shown.textContent = await answer.text();
        shown.classList.toggle('problem', !answer.ok);
      } catch (_) {
        shown.textContent = 'The count could not be fetched.';
      }
    }, 300);
  });
})();
