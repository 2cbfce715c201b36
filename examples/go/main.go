// reason-go: a command-line tool on libreason's Go package.
//
//	reason-go generate -model DIR [flags] PROMPT   stream a completion to stdout
//	reason-go score    -model DIR [flags] TEXT     per-token log-probabilities of TEXT
//	reason-go train    -model DIR [flags]          GRPO steps with a reward written in Go
//
// -template wraps the prompt ("{prompt}" is replaced, \n is a newline), e.g. for the
// synthetic addition models: -template 'User: {prompt}\nAssistant:'.
//
// Build: go build (needs golang-libreason-dev and libreason-dev; see go.mod).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strings"

	"libreason.org/go/reason"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  reason-go generate -model DIR [-template T] [-max-tokens N] [-temperature T] [-top-p P] [-seed S] [-pull] PROMPT
  reason-go score    -model DIR [-template T] TEXT
  reason-go train    -model DIR [-problems FILE.jsonl] [-template T] [-steps N] [-prompts N] [-group G]
                     [-lr LR] [-max-tokens N] [-seed S] [-out DIR]
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "generate":
		err = generate(os.Args[2:])
	case "score":
		err = score(os.Args[2:])
	case "train":
		err = train(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "reason-go: unknown command %q\n", os.Args[1])
		usage()
	}
	if err != nil {
		var e *reason.Error
		if errors.As(err, &e) { // the library's error: its code name and message
			fmt.Fprintf(os.Stderr, "reason-go: %s: %s\n", e.Name, e.Message)
		} else {
			fmt.Fprintf(os.Stderr, "reason-go: %v\n", err)
		}
		os.Exit(1)
	}
}

// common flags
type common struct {
	fs       *flag.FlagSet
	model    *string
	template *string
}

func newFlags(name string) common {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	return common{
		fs:       fs,
		model:    fs.String("model", "", "model directory (Hugging Face layout)"),
		template: fs.String("template", "{prompt}", `prompt template: {prompt} is replaced, \n is a newline`),
	}
}

func (c common) format(prompt string) string {
	t := strings.ReplaceAll(*c.template, `\n`, "\n")
	return strings.ReplaceAll(t, "{prompt}", prompt)
}

func (c common) load() (*reason.Model, error) {
	if *c.model == "" {
		return nil, errors.New("-model is required")
	}
	return reason.LoadModel(*c.model)
}

func generate(args []string) error {
	c := newFlags("generate")
	maxTokens := c.fs.Int("max-tokens", 64, "new tokens at most")
	temperature := c.fs.Float64("temperature", 0, "sampling temperature (0 = greedy)")
	topP := c.fs.Float64("top-p", 1, "nucleus sampling (1 = off)")
	seed := c.fs.Int64("seed", 0, "sampling seed")
	pull := c.fs.Bool("pull", false, "pull tokens from a Stream instead of a callback")
	c.fs.Parse(args)
	if c.fs.NArg() != 1 {
		return errors.New("generate takes one PROMPT")
	}
	m, err := c.load()
	if err != nil {
		return err
	}
	defer m.Close()
	opts := reason.SamplingOptions{Temperature: float32(*temperature), TopP: float32(*topP),
		MaxNewTokens: *maxTokens, Seed: *seed}
	prompt := c.format(c.fs.Arg(0))
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var finish reason.FinishReason
	n := 0
	if *pull {
		s, err := m.Stream(prompt, opts)
		if err != nil {
			return err
		}
		defer s.Close()
		for {
			t, ok, err := s.Next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			out.WriteString(t.Text)
			out.Flush()
			n++
		}
		finish = s.FinishReason()
	} else {
		comp, err := m.Generate(prompt, opts, func(t reason.Token) bool {
			out.WriteString(t.Text)
			out.Flush() // stream: each token as soon as it is generated
			n++
			return true
		})
		if err != nil {
			return err
		}
		finish = comp.FinishReason
	}
	fmt.Fprintf(out, "\n[%d tokens, finish: %v]\n", n, finish)
	return nil
}

func score(args []string) error {
	c := newFlags("score")
	c.fs.Parse(args)
	if c.fs.NArg() != 1 {
		return errors.New("score takes one TEXT")
	}
	m, err := c.load()
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := m.Tokenizer()
	if err != nil {
		return err
	}
	ids, err := tok.EncodeWithSpecialTokens(c.format(c.fs.Arg(0)))
	if err != nil {
		return err
	}
	lp, err := m.Score(ids)
	if err != nil {
		return err
	}
	var total float64
	fmt.Println("position\ttoken\tlogprob\ttext")
	for i, v := range lp {
		piece, err := tok.Decode(ids[i+1 : i+2])
		if err != nil {
			return err
		}
		fmt.Printf("%d\t%d\t%.4f\t%q\n", i+1, ids[i+1], v, piece)
		total += float64(v)
	}
	fmt.Printf("total logprob %.4f over %d tokens, perplexity %.3f\n", total, len(lp), math.Exp(-total/float64(len(lp))))
	return nil
}

type problem struct {
	Prompt string `json:"prompt"`
	Answer string `json:"answer"`
}

func readProblems(path string, rng *rand.Rand) ([]problem, error) {
	if path == "" { // synthetic addition problems
		ps := make([]problem, 64)
		for i := range ps {
			a, b := rng.Intn(90)+10, rng.Intn(90)+10
			ps[i] = problem{fmt.Sprintf("What is %d + %d?", a, b), fmt.Sprint(a + b)}
		}
		return ps, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ps []problem
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var p problem
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil || p.Prompt == "" {
			return nil, fmt.Errorf("%s:%d: want {\"prompt\": ..., \"answer\": ...}", path, line)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%s: no problems", path)
	}
	return ps, sc.Err()
}

// boxedAnswer is the reward, in Go: 1 when the completion's \boxed{} holds the answer.
func boxedAnswer(_, completion, answer string) float32 {
	i := strings.LastIndex(completion, `\boxed{`)
	if i < 0 {
		return 0
	}
	rest := completion[i+len(`\boxed{`):]
	j := strings.Index(rest, "}")
	if j < 0 || strings.TrimSpace(rest[:j]) != answer {
		return 0
	}
	return 1
}

func train(args []string) error {
	c := newFlags("train")
	problems := c.fs.String("problems", "", `JSONL file of {"prompt", "answer"} (default: synthetic additions)`)
	steps := c.fs.Int("steps", 3, "GRPO steps")
	prompts := c.fs.Int("prompts", 2, "prompts per step")
	group := c.fs.Int("group", 4, "completions per prompt (GRPO group size)")
	lr := c.fs.Float64("lr", 1e-3, "learning rate")
	maxTokens := c.fs.Int("max-tokens", 64, "new tokens per completion at most")
	seed := c.fs.Int64("seed", 1, "seed of the problem order and sampling")
	outDir := c.fs.String("out", "", "save the trained policy (and optimizer state) here")
	c.fs.Parse(args)
	rng := rand.New(rand.NewSource(*seed))
	ps, err := readProblems(*problems, rng)
	if err != nil {
		return err
	}
	m, err := c.load()
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := m.Tokenizer()
	if err != nil {
		return err
	}
	tr, err := reason.NewTrainer(m, nil, fmt.Sprintf("optimizer { lr: %g } grpo { group_size: %d }", *lr, *group))
	if err != nil {
		return err
	}
	defer tr.Close()
	for step := 1; step <= *steps; step++ {
		var batch []reason.GRPOSample
		var completions [][]int32
		var answers []string
		for p := 0; p < *prompts; p++ {
			pr := ps[rng.Intn(len(ps))]
			ids, err := tok.EncodeWithSpecialTokens(c.format(pr.Prompt))
			if err != nil {
				return err
			}
			group := make([][]int32, *group)
			for i := range group {
				group[i] = ids
			}
			// A group: G samples of one prompt (request i uses seed + i), at the GRPO temperature 1.
			cs, err := m.GenerateIDs(group, reason.SamplingOptions{Temperature: 1,
				MaxNewTokens: *maxTokens, Seed: *seed*1000003 + int64(step*100+p*10)}, nil)
			if err != nil {
				return err
			}
			for _, comp := range cs {
				batch = append(batch, reason.GRPOSample{Prompt: ids, Completion: comp.TokenIDs,
					OldLogprobs: comp.Logprobs, Truncated: comp.FinishReason == reason.FinishLength})
				completions = append(completions, comp.TokenIDs)
				answers = append(answers, pr.Answer)
			}
		}
		// The Go reward, run through the library (a panic or NaN would count as failed).
		rewards, failed, err := reason.ComputeRewards(tok, completions, answers, boxedAnswer)
		if err != nil {
			return err
		}
		for i := range batch {
			batch[i].Reward = rewards[i]
		}
		met, err := tr.GRPOStep(batch)
		if err != nil {
			return err
		}
		fmt.Printf("step %d: reward_mean=%.3f reward_std=%.3f loss=%.5g grad_norm=%.4g kl=%.4g entropy=%.4g tokens=%d failed=%d\n",
			met.Step, met.RewardMean, met.RewardStd, met.Loss, met.GradNorm, met.KL, met.Entropy, met.Tokens, failed)
	}
	if *outDir != "" {
		if err := tr.Save(*outDir); err != nil {
			return err
		}
		fmt.Printf("saved %s\n", *outDir)
	}
	return nil
}
