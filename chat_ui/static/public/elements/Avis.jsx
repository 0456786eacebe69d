import { useState } from "react"
import { ThumbsUp, ThumbsDown } from "lucide-react"

// The agent's opinion of one answer: useful or not, tags, a comment. Stored by the server (action « avis »),
// then kept in the card itself so that a resumed conversation shows it.
export default function Avis() {
  const [value, setValue] = useState(props.value === 0 || props.value === 1 ? props.value : null)
  const [selected, setSelected] = useState(props.selected || [])
  const [comment, setComment] = useState(props.comment || "")
  const [sent, setSent] = useState(!!props.sent)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState("")

  const toggle = (tag) =>
    setSelected(selected.includes(tag) ? selected.filter((t) => t !== tag) : [...selected, tag])

  const send = async () => {
    setBusy(true)
    setError("")
    try {
      const res = await callAction({
        name: "avis",
        payload: { message_id: props.message_id, value: value, tags: selected, comment: comment },
      })
      const answer = res && res.response
      if (answer && answer.ok) {
        setSent(true)
        updateElement(Object.assign({}, props, { value: value, selected: selected, comment: comment, sent: true }))
      } else {
        setError((answer && answer.error) || "L'avis n'a pas pu être enregistré.")
      }
    } catch (e) {
      setError("L'avis n'a pas pu être enregistré.")
    }
    setBusy(false)
  }

  if (sent) {
    return (
      <div className="cv-avis" data-testid="feedback-sent">
        <span>
          ✓ Avis enregistré : {value === 1 ? "réponse utile" : "réponse pas utile"}
          {selected.length ? " · " + selected.join(", ") : ""}
          {comment ? " · « " + comment + " »" : ""}
        </span>
        <button type="button" className="cv-linkbtn" onClick={() => setSent(false)}>Modifier</button>
      </div>
    )
  }

  return (
    <div className="cv-avis" data-testid="feedback">
      <span>Votre avis sur cette réponse :</span>
      <button type="button" className="cv-btn" aria-pressed={value === 1} onClick={() => setValue(1)}>
        <ThumbsUp size={14} aria-hidden="true" /> Utile
      </button>
      <button type="button" className="cv-btn" aria-pressed={value === 0} onClick={() => setValue(0)}>
        <ThumbsDown size={14} aria-hidden="true" /> Pas utile
      </button>
      {value === null ? null : (
        <div className="cv-avis-form">
          <div className="cv-tags" role="group" aria-label="Problèmes constatés">
            {(props.tags || []).map((tag) => (
              <button type="button" key={tag} className="cv-btn" aria-pressed={selected.includes(tag)}
                onClick={() => toggle(tag)}>
                {tag}
              </button>
            ))}
          </div>
          <textarea className="cv-textarea" aria-label="Commentaire" placeholder="Un commentaire ? (facultatif, sans donnée personnelle)"
            value={comment} maxLength={2000} onChange={(e) => setComment(e.target.value)} />
          <div className="cv-actions">
            <button type="button" className="cv-btn cv-btn-primary" disabled={busy} onClick={send}>
              {busy ? "Envoi…" : "Envoyer l'avis"}
            </button>
          </div>
          {error ? <div className="cv-error" role="alert">{error}</div> : null}
        </div>
      )}
    </div>
  )
}
