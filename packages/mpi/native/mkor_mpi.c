/*
 * mkor_mpi: the native half of @mkor/mpi, an Open MPI transport for Node.js written against the
 * plain N-API C headers.
 *
 * Design. One dedicated thread (the "MPI thread") makes every MPI call of the process: it calls
 * MPI_Init_thread (MPI_THREAD_FUNNELED is all it needs), serves a FIFO queue that the JavaScript
 * thread fills, and calls MPI_Finalize. For every queued collective it starts the non-blocking MPI
 * collective (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier) in queue order, so collectives start in
 * call order on every rank even with many in flight, and it polls the started requests with
 * MPI_Test: no MPI call ever blocks the event loop, and a collective that waits past its deadline
 * can be reported. Results go back to the JavaScript thread through one thread-safe function.
 *
 * Before each collective (when asked) the ranks agree on what they are about to do: a 10-integer
 * MPI_Iallreduce(MPI_MAX) of (header, -header), header = (kind, length, op, precision, root), gives
 * every rank the same minimum and maximum of each field, so a disagreement is seen by all ranks at
 * once; they all skip the collective and the communicator stays usable.
 *
 * Exit notices. A rank whose process exits abnormally (an uncaught exception, a non-zero exit code,
 * or collectives still in flight) cannot take part in MPI_Finalize, which waits for every rank, so
 * the others would wait for it until their deadlines. Instead its MPI thread sends one short text
 * ("exited with code 1 after ...") to every other rank on a duplicate of MPI_COMM_WORLD kept for
 * these notices, and the process exits without MPI_Finalize. Every rank keeps a receive for a
 * notice posted; when one arrives, the engine breaks and every collective in flight or queued fails
 * at once with "rank <sender> <text>", and mpirun then ends the job as for a crash.
 *
 * float16 on the wire, two ways (the JavaScript side chooses):
 *  - "convert": each value is rounded to the nearest binary16 (ties to even) and decoded back to
 *    float32, then summed by MPI_Iallreduce(MPI_FLOAT, MPI_SUM): float32 bytes on the wire, the
 *    float16 rounding error only once per contribution.
 *  - "half": the binary16 bit patterns travel as MPI_UINT16_T and a user-defined commutative
 *    MPI_Op adds pairs in float32 and rounds each partial sum back to binary16: half the bytes,
 *    one more binary16 rounding per combining step.
 */
#include <math.h>
#include <mpi.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------ */
/* binary16 <-> binary32                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Rounds a float32 to the nearest binary16 bit pattern, ties to even; overflow gives +-Inf, NaN
 * stays a (quiet) NaN, the sign of zero is kept. */
static uint16_t float_to_half_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t biased_exponent = (bits >> 23) & 0xffu;
  uint32_t fraction = bits & 0x7fffffu;
  if (biased_exponent == 0xffu) {
    return (uint16_t)(sign | 0x7c00u | (fraction != 0 ? 0x200u | (fraction >> 13) : 0u));
  }
  const int half_exponent = (int)biased_exponent - 127 + 15;
  if (half_exponent >= 31) return (uint16_t)(sign | 0x7c00u);
  if (half_exponent <= 0) {
    /* A binary16 subnormal (or zero): count units of 2^-24. Below 2^-25 everything rounds to 0. */
    if (half_exponent < -10) return (uint16_t)sign;
    fraction |= 0x800000u;
    const unsigned shift = (unsigned)(14 - half_exponent);
    uint32_t units = fraction >> shift;
    const uint32_t rest = fraction & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (units & 1u))) units++;
    return (uint16_t)(sign | units); /* a carry into the exponent field is the right result */
  }
  uint32_t half = sign | ((uint32_t)half_exponent << 10) | (fraction >> 13);
  const uint32_t rest = fraction & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++; /* carries reach Inf exactly */
  return (uint16_t)half;
}

/* The exact float32 value of a binary16 bit pattern. */
static float half_bits_to_float(uint16_t half) {
  const uint32_t sign = ((uint32_t)half & 0x8000u) << 16;
  const uint32_t exponent = ((uint32_t)half >> 10) & 0x1fu;
  const uint32_t fraction = (uint32_t)half & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1fu) {
    bits = sign | 0x7f800000u | (fraction << 13);
  } else if (exponent == 0) {
    const float magnitude = (float)fraction * 5.9604644775390625e-8f; /* fraction * 2^-24, exact */
    return sign != 0 ? -magnitude : magnitude;
  } else {
    bits = sign | ((exponent + 112u) << 23) | (fraction << 13);
  }
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

/* The user-defined MPI_Op of the "half" wire format: inout = half(float(in) + float(inout)).
 * The float32 sum of two binary16 values is exact whenever their exponents differ by at most 13,
 * and otherwise the smaller one is below a quarter of the larger one's binary16 spacing, so
 * rounding that float32 sum to binary16 gives the correctly rounded binary16 sum. */
static void half_sum(void *in, void *inout, int *length, MPI_Datatype *datatype) {
  (void)datatype;
  const uint16_t *addend = (const uint16_t *)in;
  uint16_t *sum = (uint16_t *)inout;
  for (int i = 0; i < *length; i++) {
    sum[i] = float_to_half_bits(half_bits_to_float(addend[i]) + half_bits_to_float(sum[i]));
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Queue items                                                                                */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
  ITEM_INIT = 0,
  ITEM_ALL_REDUCE = 1,
  ITEM_BROADCAST = 2,
  ITEM_BARRIER = 3,
  ITEM_FINALIZE = 4,
} item_kind;

typedef enum { REDUCE_SUM = 0, REDUCE_MEAN = 1 } reduce_op;
typedef enum { WIRE_FLOAT32 = 0, WIRE_FLOAT16_CONVERT = 1, WIRE_FLOAT16_HALF = 2 } wire_format;
typedef enum { STAGE_WAITING, STAGE_HEADER, STAGE_DATA } item_stage;
typedef enum {
  OUTCOME_OK = 0,
  OUTCOME_TIMEOUT,
  OUTCOME_MISMATCH,
  OUTCOME_MPI_ERROR,
  OUTCOME_ABORTED,
} item_outcome;

enum { HEADER_FIELDS = 5, MESSAGE_CAPACITY = 600, REASON_CAPACITY = 400, NOTICE_TAG = 1 };

/* How long an exiting rank waits for its exit notices to leave before it exits anyway. */
static const double NOTICE_SEND_SECONDS = 1.0;

/* How long the MPI thread polls without sleeping after the last start or completion, and the
 * longest pause between polls after that (see the end of mpi_thread_main). */
static const double SPIN_SECONDS = 0.1;
static const long MAX_PAUSE_NS = 100000L;

typedef struct item {
  struct item *next;
  item_kind kind;
  reduce_op reduce;
  wire_format wire;
  int root;
  int length;
  int check_agreement;
  double deadline; /* CLOCK_MONOTONIC seconds; INFINITY for none */
  float *values;   /* `length` floats: the contribution, then the result (in place) */
  uint16_t *half_values;
  long long header[2 * HEADER_FIELDS];
  MPI_Request request;
  int request_pending;
  item_stage stage;
  item_outcome outcome;
  char message[MESSAGE_CAPACITY];
  napi_deferred deferred;
  /* ITEM_FINALIZE: whether MPI_Finalize ran. */
  int finalized;
} item;

typedef struct {
  item *head;
  item *tail;
} item_list;

static void list_push(item_list *list, item *it) {
  it->next = NULL;
  if (list->tail != NULL) {
    list->tail->next = it;
  } else {
    list->head = it;
  }
  list->tail = it;
}

static item *list_pop(item_list *list) {
  item *it = list->head;
  if (it != NULL) {
    list->head = it->next;
    if (list->head == NULL) list->tail = NULL;
    it->next = NULL;
  }
  return it;
}

static void list_append(item_list *list, item_list *more) {
  if (more->head == NULL) return;
  if (list->tail != NULL) {
    list->tail->next = more->head;
  } else {
    list->head = more->head;
  }
  list->tail = more->tail;
  more->head = more->tail = NULL;
}

static void free_item(item *it) {
  free(it->values);
  free(it->half_values);
  free(it);
}

/* ------------------------------------------------------------------------------------------ */
/* The engine: process-wide, because MPI can be initialised once per process                  */
/* ------------------------------------------------------------------------------------------ */

typedef enum { PHASE_IDLE = 0, PHASE_RUNNING, PHASE_CLOSING, PHASE_DONE } engine_phase;

static struct {
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  item_list queue; /* guarded by mutex */
  item *outgoing_notice; /* guarded by mutex: an exit notice to send, its `outcome` set once sent */
  pthread_cond_t notice_sent;
  pthread_t thread;
  engine_phase phase; /* JavaScript thread only */
  napi_threadsafe_function deliver;
  int unsettled; /* JavaScript thread only: promises not yet settled */
  /* MPI thread only: */
  int rank;
  int size;
  int thread_level;
  char library_version[MPI_MAX_LIBRARY_VERSION_STRING];
  MPI_Op half_sum_op;
  int broken;
  char broken_reason[REASON_CAPACITY];
  item_list abandoned; /* requests that may still write into their buffers */
  MPI_Comm notice_comm;
  MPI_Request notice_request; /* the posted receive of an exit notice */
  int notice_posted;
  char notice_text[REASON_CAPACITY];
  int failed_rank; /* the rank whose exit notice broke the engine, or -1; read by settle_promise */
} engine = {.mutex = PTHREAD_MUTEX_INITIALIZER,
            .wake = PTHREAD_COND_INITIALIZER,
            .notice_sent = PTHREAD_COND_INITIALIZER,
            .failed_rank = -1};

static double monotonic_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void deliver(item *it) {
  if (napi_call_threadsafe_function(engine.deliver, it, napi_tsfn_nonblocking) != napi_ok) {
    free_item(it);
  }
}

static const char *kind_name(long long kind) {
  switch (kind) {
    case ITEM_ALL_REDUCE:
      return "allReduce";
    case ITEM_BROADCAST:
      return "broadcast";
    case ITEM_BARRIER:
      return "barrier";
    default:
      return "unknown";
  }
}

static const char *reduce_name(long long reduce) { return reduce == REDUCE_MEAN ? "mean" : "sum"; }
static const char *wire_name(long long wire) { return wire == WIRE_FLOAT32 ? "float32" : "float16"; }

static void describe_mpi_error(item *it, const char *call, int code) {
  char text[MPI_MAX_ERROR_STRING];
  int text_length = 0;
  if (MPI_Error_string(code, text, &text_length) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", code);
  it->outcome = OUTCOME_MPI_ERROR;
  snprintf(it->message, sizeof it->message, "%s failed: %s", call, text);
}

/* Marks the engine unusable; later collectives are rejected with `reason`. */
static void break_engine(const char *reason) {
  if (!engine.broken) {
    engine.broken = 1;
    snprintf(engine.broken_reason, sizeof engine.broken_reason, "%.*s", REASON_CAPACITY - 1, reason);
  }
}

/* Starts the data collective of `it`. Returns 0 on success; on failure `it` carries the error. */
static int start_data(item *it) {
  int code = MPI_SUCCESS;
  const char *call = "";
  it->stage = STAGE_DATA;
  if (it->kind == ITEM_ALL_REDUCE) {
    if (it->wire == WIRE_FLOAT16_HALF) {
      it->half_values = (uint16_t *)malloc((size_t)(it->length > 0 ? it->length : 1) * sizeof(uint16_t));
      if (it->half_values == NULL) {
        it->outcome = OUTCOME_MPI_ERROR;
        snprintf(it->message, sizeof it->message, "out of memory for %d float16 values", it->length);
        return -1;
      }
      for (int i = 0; i < it->length; i++) it->half_values[i] = float_to_half_bits(it->values[i]);
      call = "MPI_Iallreduce";
      code = MPI_Iallreduce(MPI_IN_PLACE, it->half_values, it->length, MPI_UINT16_T, engine.half_sum_op,
                            MPI_COMM_WORLD, &it->request);
    } else {
      if (it->wire == WIRE_FLOAT16_CONVERT) {
        for (int i = 0; i < it->length; i++) it->values[i] = half_bits_to_float(float_to_half_bits(it->values[i]));
      }
      call = "MPI_Iallreduce";
      code = MPI_Iallreduce(MPI_IN_PLACE, it->values, it->length, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &it->request);
    }
  } else if (it->kind == ITEM_BROADCAST) {
    call = "MPI_Ibcast";
    code = MPI_Ibcast(it->values, it->length, MPI_FLOAT, it->root, MPI_COMM_WORLD, &it->request);
  } else {
    call = "MPI_Ibarrier";
    code = MPI_Ibarrier(MPI_COMM_WORLD, &it->request);
  }
  if (code != MPI_SUCCESS) {
    describe_mpi_error(it, call, code);
    return -1;
  }
  it->request_pending = 1;
  return 0;
}

/* Starts the agreement check of `it`. */
static int start_header(item *it) {
  const long long fields[HEADER_FIELDS] = {it->kind, it->length, it->kind == ITEM_ALL_REDUCE ? it->reduce : 0,
                                           it->kind == ITEM_ALL_REDUCE ? it->wire : 0,
                                           it->kind == ITEM_BROADCAST ? it->root : 0};
  for (int i = 0; i < HEADER_FIELDS; i++) {
    it->header[i] = fields[i];
    it->header[HEADER_FIELDS + i] = -fields[i];
  }
  it->stage = STAGE_HEADER;
  const int code = MPI_Iallreduce(MPI_IN_PLACE, it->header, 2 * HEADER_FIELDS, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD,
                                  &it->request);
  if (code != MPI_SUCCESS) {
    describe_mpi_error(it, "MPI_Iallreduce", code);
    return -1;
  }
  it->request_pending = 1;
  return 0;
}

/* After the agreement check completed: 0 when every rank agrees, else -1 with the message set. */
static int check_header(item *it) {
  const long long mine[HEADER_FIELDS] = {it->kind, it->length, it->kind == ITEM_ALL_REDUCE ? it->reduce : 0,
                                         it->kind == ITEM_ALL_REDUCE ? it->wire : 0,
                                         it->kind == ITEM_BROADCAST ? it->root : 0};
  long long lowest[HEADER_FIELDS];
  long long highest[HEADER_FIELDS];
  for (int i = 0; i < HEADER_FIELDS; i++) {
    highest[i] = it->header[i];
    lowest[i] = -it->header[HEADER_FIELDS + i];
  }
  char *text = it->message;
  const size_t capacity = sizeof it->message;
  if (lowest[0] != highest[0]) {
    snprintf(text, capacity, "ranks called different collectives at this position (%s and %s; this rank: %s)",
             kind_name(lowest[0]), kind_name(highest[0]), kind_name(mine[0]));
  } else if (lowest[1] != highest[1]) {
    snprintf(text, capacity, "buffer lengths differ across ranks, from %lld to %lld elements (this rank: %lld)",
             lowest[1], highest[1], mine[1]);
  } else if (lowest[2] != highest[2]) {
    snprintf(text, capacity, "ranks passed different ops ('%s' and '%s'; this rank: '%s')", reduce_name(lowest[2]),
             reduce_name(highest[2]), reduce_name(mine[2]));
  } else if (lowest[3] != highest[3]) {
    if (lowest[3] != WIRE_FLOAT32) {
      snprintf(text, capacity, "ranks use different float16 wire formats (set float16Wire alike on every rank)");
    } else {
      snprintf(text, capacity, "ranks passed different precisions ('%s' and '%s'; this rank: '%s')",
               wire_name(lowest[3]), wire_name(highest[3]), wire_name(mine[3]));
    }
  } else if (lowest[4] != highest[4]) {
    snprintf(text, capacity, "ranks passed different roots, from %lld to %lld (this rank: %lld)", lowest[4],
             highest[4], mine[4]);
  } else {
    return 0;
  }
  it->outcome = OUTCOME_MISMATCH;
  return -1;
}

/* The data collective of `it` completed: decode and scale the result. */
static void finish_data(item *it) {
  if (it->kind != ITEM_ALL_REDUCE) return;
  if (it->wire == WIRE_FLOAT16_HALF) {
    for (int i = 0; i < it->length; i++) it->values[i] = half_bits_to_float(it->half_values[i]);
    free(it->half_values);
    it->half_values = NULL;
  }
  if (it->reduce == REDUCE_MEAN) {
    const float ranks = (float)engine.size;
    for (int i = 0; i < it->length; i++) it->values[i] /= ranks;
  }
}

/* Hands `it` back to JavaScript; if its MPI request is still pending, a copy goes back and the
 * original is kept (MPI may still write into its buffers) until MPI_Finalize. */
static void settle(item *it) {
  if (!it->request_pending) {
    deliver(it);
    return;
  }
  item *report = (item *)calloc(1, sizeof(item));
  if (report != NULL) {
    report->kind = it->kind;
    report->outcome = it->outcome;
    report->deferred = it->deferred;
    memcpy(report->message, it->message, sizeof report->message);
    deliver(report);
  }
  list_push(&engine.abandoned, it);
}

static void fail_with(item *it, item_outcome outcome, const char *message) {
  it->outcome = outcome;
  snprintf(it->message, sizeof it->message, "%s", message);
  settle(it);
}

/* Starts `it`; returns 1 when it stays in flight, 0 when it was settled at once. */
static int start_item(item *it) {
  if (engine.broken) {
    fail_with(it, OUTCOME_ABORTED, engine.broken_reason);
    return 0;
  }
  const int failed = it->check_agreement ? start_header(it) : start_data(it);
  if (failed) {
    break_engine(it->message);
    settle(it);
    return 0;
  }
  return 1;
}

/* Runs MPI_Finalize (when no request may still be pending) and answers the ITEM_FINALIZE. */
static void finalize_mpi(item *closing) {
  closing->finalized = 0;
  if (engine.abandoned.head == NULL) {
    if (engine.notice_posted) {
      MPI_Cancel(&engine.notice_request);
      MPI_Wait(&engine.notice_request, MPI_STATUS_IGNORE);
      engine.notice_posted = 0;
    }
    MPI_Comm_free(&engine.notice_comm);
    MPI_Op_free(&engine.half_sum_op);
    MPI_Finalize();
    closing->finalized = 1;
  } else {
    snprintf(closing->message, sizeof closing->message,
             "MPI_Finalize skipped: a collective that failed may still be pending in MPI (%s)", engine.broken_reason);
  }
  for (item *it = list_pop(&engine.abandoned); it != NULL; it = list_pop(&engine.abandoned)) free_item(it);
}

/* Sends the text of `notice` to every other rank, waiting at most NOTICE_SEND_SECONDS for the
 * sends to complete, and sets its `outcome` (OK: sent; ABORTED: not needed or not completed). */
static void send_exit_notice(item *notice) {
  if (engine.failed_rank >= 0) {
    notice->outcome = OUTCOME_ABORTED;
    snprintf(notice->message, sizeof notice->message, "rank %d already failed", engine.failed_rank);
    return;
  }
  MPI_Request *requests = (MPI_Request *)calloc((size_t)engine.size, sizeof(MPI_Request));
  if (requests == NULL) {
    notice->outcome = OUTCOME_ABORTED;
    snprintf(notice->message, sizeof notice->message, "out of memory");
    return;
  }
  const int length = (int)strnlen(notice->message, REASON_CAPACITY - 1);
  notice->message[length] = '\0';
  for (int peer = 0; peer < engine.size; peer++) {
    requests[peer] = MPI_REQUEST_NULL;
    if (peer != engine.rank) {
      MPI_Isend(notice->message, length + 1, MPI_CHAR, peer, NOTICE_TAG, engine.notice_comm, &requests[peer]);
    }
  }
  const double deadline = monotonic_seconds() + NOTICE_SEND_SECONDS;
  int done = 0;
  while (!done && monotonic_seconds() < deadline) {
    if (MPI_Testall(engine.size, requests, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) break;
    if (!done) sched_yield();
  }
  free(requests); /* sends still pending are left to the exiting process */
  notice->outcome = done ? OUTCOME_OK : OUTCOME_ABORTED;
  if (!done) snprintf(notice->message, sizeof notice->message, "the notices were not delivered within %.0f s", NOTICE_SEND_SECONDS);
}

/* Whether another rank's exit notice arrived; if so, breaks the engine with "rank <r> <text>". */
static int exit_notice_arrived(void) {
  if (!engine.notice_posted) return 0;
  int arrived = 0;
  MPI_Status status;
  if (MPI_Test(&engine.notice_request, &arrived, &status) != MPI_SUCCESS || !arrived) return 0;
  engine.notice_posted = 0;
  engine.notice_text[REASON_CAPACITY - 1] = '\0';
  if (!engine.broken) {
    char reason[REASON_CAPACITY];
    snprintf(reason, sizeof reason, "rank %d %.*s", status.MPI_SOURCE, REASON_CAPACITY - 24, engine.notice_text);
    engine.failed_rank = status.MPI_SOURCE;
    break_engine(reason);
  }
  return 1;
}

/* Fails every item of `items` but an ITEM_FINALIZE (kept in `items`) with the engine's reason. */
static void abort_items(item_list *items) {
  item_list keep = {NULL, NULL};
  for (item *it = list_pop(items); it != NULL; it = list_pop(items)) {
    if (it->kind == ITEM_FINALIZE) {
      list_push(&keep, it);
    } else {
      fail_with(it, OUTCOME_ABORTED, engine.broken_reason);
    }
  }
  *items = keep;
}

static void *mpi_thread_main(void *argument) {
  item *init = (item *)argument;
  int provided = MPI_THREAD_SINGLE;
  int code = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
  if (code != MPI_SUCCESS) {
    describe_mpi_error(init, "MPI_Init_thread", code);
    deliver(init);
    return NULL;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &engine.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &engine.size);
  engine.thread_level = provided;
  int version_length = 0;
  MPI_Get_library_version(engine.library_version, &version_length);
  MPI_Op_create(half_sum, 1, &engine.half_sum_op);
  MPI_Comm_dup(MPI_COMM_WORLD, &engine.notice_comm);
  MPI_Comm_set_errhandler(engine.notice_comm, MPI_ERRORS_RETURN);
  engine.notice_posted = MPI_Irecv(engine.notice_text, REASON_CAPACITY, MPI_CHAR, MPI_ANY_SOURCE, NOTICE_TAG,
                                   engine.notice_comm, &engine.notice_request) == MPI_SUCCESS;
  deliver(init);

  item_list waiting = {NULL, NULL}; /* taken from the queue, not started yet, in call order */
  item_list active = {NULL, NULL};  /* started, in start order */
  item *blocking = NULL;            /* the item whose agreement check must finish before others start */
  double last_progress = monotonic_seconds();
  long pause_ns = 0;

  for (;;) {
    pthread_mutex_lock(&engine.mutex);
    if (engine.queue.head == NULL && waiting.head == NULL && active.head == NULL && engine.outgoing_notice == NULL) {
      pthread_cond_wait(&engine.wake, &engine.mutex);
    }
    list_append(&waiting, &engine.queue);
    item *notice = engine.outgoing_notice;
    pthread_mutex_unlock(&engine.mutex);

    if (notice != NULL) {
      send_exit_notice(notice);
      pthread_mutex_lock(&engine.mutex);
      engine.outgoing_notice = NULL;
      notice->finalized = 1; /* "answered" */
      pthread_cond_signal(&engine.notice_sent);
      pthread_mutex_unlock(&engine.mutex);
    }

    int progressed = 0;

    /* Another rank's exit notice: everything in flight or queued fails now, naming that rank. */
    if (exit_notice_arrived()) {
      abort_items(&active);
      abort_items(&waiting);
      blocking = NULL;
      progressed = 1;
    }

    /* Start waiting items in call order; an agreement check holds back the items after it, so
     * that the next collective starts at the same position on every rank. */
    while (waiting.head != NULL && blocking == NULL) {
      item *next = waiting.head;
      if (next->kind == ITEM_FINALIZE) {
        if (active.head != NULL) break;
        list_pop(&waiting);
        finalize_mpi(next);
        /* Anything queued after close() is answered as aborted. */
        pthread_mutex_lock(&engine.mutex);
        list_append(&waiting, &engine.queue);
        pthread_mutex_unlock(&engine.mutex);
        for (item *late = list_pop(&waiting); late != NULL; late = list_pop(&waiting)) {
          late->outcome = OUTCOME_ABORTED;
          snprintf(late->message, sizeof late->message, "the transport was closed");
          deliver(late);
        }
        if (next->deferred != NULL) deliver(next); /* finalizeAtExit() reads and frees its own item */
        return NULL;
      }
      list_pop(&waiting);
      progressed = 1;
      if (start_item(next)) {
        list_push(&active, next);
        if (next->stage == STAGE_HEADER) blocking = next;
      }
    }

    /* Test started requests, in start order. */
    item_list still_active = {NULL, NULL};
    for (item *it = list_pop(&active); it != NULL; it = list_pop(&active)) {
      int done = 0;
      code = MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS) {
        it->request_pending = 0;
        describe_mpi_error(it, "MPI_Test", code);
        break_engine(it->message);
        if (blocking == it) blocking = NULL;
        settle(it);
        progressed = 1;
        continue;
      }
      if (!done) {
        list_push(&still_active, it);
        continue;
      }
      progressed = 1;
      it->request_pending = 0;
      if (it->stage == STAGE_HEADER) {
        blocking = NULL;
        if (check_header(it) != 0) {
          settle(it); /* every rank saw the same disagreement: the group stays usable */
          continue;
        }
        if (start_data(it) != 0) {
          break_engine(it->message);
          settle(it);
          continue;
        }
        list_push(&still_active, it);
        continue;
      }
      finish_data(it);
      it->outcome = OUTCOME_OK;
      settle(it);
    }
    active = still_active;

    /* Deadlines: a collective that waited too long breaks the group, since MPI cannot cancel it. */
    const double now = monotonic_seconds();
    int timed_out = 0;
    for (item *it = active.head; it != NULL && !timed_out; it = it->next) timed_out = now > it->deadline;
    for (item *it = waiting.head; it != NULL && !timed_out; it = it->next) timed_out = now > it->deadline;
    if (timed_out) {
      item_list keep = {NULL, NULL};
      item_list everything = {NULL, NULL};
      list_append(&everything, &active);
      list_append(&everything, &waiting);
      for (item *it = list_pop(&everything); it != NULL; it = list_pop(&everything)) {
        if (it->kind == ITEM_FINALIZE) {
          list_push(&keep, it);
        } else if (now > it->deadline) {
          break_engine("an earlier collective timed out");
          fail_with(it, OUTCOME_TIMEOUT, "timed out");
        } else {
          break_engine("an earlier collective timed out");
          fail_with(it, OUTCOME_ABORTED, engine.broken_reason);
        }
      }
      waiting = keep;
      blocking = NULL;
      progressed = 1;
    }

    /* Progress. MPI moves a large message only while someone calls MPI_Test, so the thread polls
     * continuously (yielding the core to other runnable threads each round) for SPIN_SECONDS after
     * the last start or completion; past that (a rank is late), it sleeps between polls, 8 us
     * doubling to MAX_PAUSE_NS, and wakes at once when JavaScript queues something. */
    if (progressed) {
      last_progress = monotonic_seconds();
      pause_ns = 0;
    } else if (active.head != NULL || waiting.head != NULL) {
      if (monotonic_seconds() - last_progress < SPIN_SECONDS) {
        sched_yield();
      } else {
        pause_ns = pause_ns == 0 ? 8000L : (pause_ns * 2 < MAX_PAUSE_NS ? pause_ns * 2 : MAX_PAUSE_NS);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += pause_ns;
        if (until.tv_nsec >= 1000000000L) {
          until.tv_sec += 1;
          until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&engine.mutex);
        if (engine.queue.head == NULL) pthread_cond_timedwait(&engine.wake, &engine.mutex, &until);
        pthread_mutex_unlock(&engine.mutex);
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* JavaScript side                                                                            */
/* ------------------------------------------------------------------------------------------ */

#define CHECK_NAPI(env, call)                                               \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error((env), "MPI_ADDON", "mkor_mpi: N-API call failed: " #call); \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

static const char *outcome_code(item_outcome outcome) {
  switch (outcome) {
    case OUTCOME_TIMEOUT:
      return "TIMEOUT";
    case OUTCOME_MISMATCH:
      return "MISMATCH";
    case OUTCOME_ABORTED:
      return "ABORTED";
    default:
      return "MPI_ERROR";
  }
}

static void set_named(napi_env env, napi_value object, const char *name, napi_value value) {
  napi_set_named_property(env, object, name, value);
}

static void free_external(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

/* Builds the Float32Array result of a completed allReduce/broadcast, taking over its buffer. */
static napi_value result_array(napi_env env, item *it) {
  napi_value buffer;
  const size_t bytes = (size_t)it->length * sizeof(float);
  if (it->length > 0 &&
      napi_create_external_arraybuffer(env, it->values, bytes, free_external, NULL, &buffer) == napi_ok) {
    it->values = NULL;
  } else {
    void *copy = NULL;
    if (napi_create_arraybuffer(env, bytes, &copy, &buffer) != napi_ok) return NULL;
    if (bytes > 0) memcpy(copy, it->values, bytes);
  }
  napi_value array;
  if (napi_create_typedarray(env, napi_float32_array, (size_t)it->length, buffer, 0, &array) != napi_ok) return NULL;
  return array;
}

static void settle_promise(napi_env env, item *it) {
  napi_value value = NULL;
  if (it->kind == ITEM_INIT && it->outcome == OUTCOME_OK) {
    napi_create_object(env, &value);
    napi_value number;
    napi_create_int32(env, engine.rank, &number);
    set_named(env, value, "rank", number);
    napi_create_int32(env, engine.size, &number);
    set_named(env, value, "size", number);
    napi_create_int32(env, engine.thread_level, &number);
    set_named(env, value, "threadLevel", number);
    napi_value text;
    napi_create_string_utf8(env, engine.library_version, NAPI_AUTO_LENGTH, &text);
    set_named(env, value, "libraryVersion", text);
  } else if (it->kind == ITEM_FINALIZE) {
    napi_create_object(env, &value);
    napi_value flag;
    napi_get_boolean(env, it->finalized != 0, &flag);
    set_named(env, value, "finalized", flag);
    napi_value text;
    napi_create_string_utf8(env, it->message, NAPI_AUTO_LENGTH, &text);
    set_named(env, value, "message", text);
  } else if (it->outcome == OUTCOME_OK) {
    if (it->kind == ITEM_BARRIER) {
      napi_get_undefined(env, &value);
    } else {
      value = result_array(env, it);
    }
  }
  if (value != NULL) {
    napi_resolve_deferred(env, it->deferred, value);
    return;
  }
  napi_value code;
  napi_value message;
  napi_value error;
  napi_create_string_utf8(env, it->outcome == OUTCOME_OK ? "MPI_ERROR" : outcome_code(it->outcome), NAPI_AUTO_LENGTH,
                          &code);
  napi_create_string_utf8(env, it->outcome == OUTCOME_OK ? "could not create the result" : it->message,
                          NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  if (it->outcome == OUTCOME_ABORTED && engine.failed_rank >= 0) {
    napi_value rank;
    napi_create_int32(env, engine.failed_rank, &rank);
    set_named(env, error, "failedRank", rank);
  }
  napi_reject_deferred(env, it->deferred, error);
}

/* Runs on the JavaScript thread for every item the MPI thread hands back. */
static void on_delivered(napi_env env, napi_value callback, void *context, void *data) {
  (void)callback;
  (void)context;
  item *it = (item *)data;
  if (env != NULL) {
    settle_promise(env, it);
    engine.unsettled--;
    if (it->kind == ITEM_FINALIZE) {
      pthread_join(engine.thread, NULL);
      engine.phase = PHASE_DONE;
      napi_release_threadsafe_function(engine.deliver, napi_tsfn_release);
    } else if (it->kind == ITEM_INIT && it->outcome != OUTCOME_OK) {
      pthread_join(engine.thread, NULL);
      engine.phase = PHASE_DONE;
      napi_release_threadsafe_function(engine.deliver, napi_tsfn_release);
    } else if (engine.unsettled == 0) {
      napi_unref_threadsafe_function(env, engine.deliver);
    }
  }
  free_item(it);
}

/* Queues `it` for the MPI thread and returns its promise. */
static napi_value enqueue(napi_env env, item *it) {
  napi_value promise;
  if (napi_create_promise(env, &it->deferred, &promise) != napi_ok) {
    free_item(it);
    napi_throw_error(env, "MPI_ADDON", "mkor_mpi: could not create a promise");
    return NULL;
  }
  if (engine.unsettled++ == 0) napi_ref_threadsafe_function(env, engine.deliver);
  pthread_mutex_lock(&engine.mutex);
  list_push(&engine.queue, it);
  pthread_cond_signal(&engine.wake);
  pthread_mutex_unlock(&engine.mutex);
  return promise;
}

/* start(): Promise<{ rank, size, threadLevel, libraryVersion }>. Starts the MPI thread, which
 * calls MPI_Init_thread. Once per process. */
static napi_value js_start(napi_env env, napi_callback_info info) {
  (void)info;
  if (engine.phase != PHASE_IDLE) {
    napi_throw_error(env, "MPI_STATE",
                     engine.phase == PHASE_DONE ? "MPI was already finalised in this process and cannot start again"
                                                : "MPI is already running in this process");
    return NULL;
  }
  napi_value name;
  CHECK_NAPI(env, napi_create_string_utf8(env, "mkor_mpi", NAPI_AUTO_LENGTH, &name));
  CHECK_NAPI(env, napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, on_delivered,
                                                  &engine.deliver));
  item *init = (item *)calloc(1, sizeof(item));
  if (init == NULL) {
    napi_throw_error(env, "MPI_ADDON", "mkor_mpi: out of memory");
    return NULL;
  }
  init->kind = ITEM_INIT;
  napi_value promise;
  CHECK_NAPI(env, napi_create_promise(env, &init->deferred, &promise));
  engine.unsettled = 1;
  if (pthread_create(&engine.thread, NULL, mpi_thread_main, init) != 0) {
    napi_value error;
    napi_value message;
    napi_create_string_utf8(env, "could not start the MPI thread", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, init->deferred, error);
    free(init);
    engine.unsettled = 0;
    napi_release_threadsafe_function(engine.deliver, napi_tsfn_abort);
    return promise;
  }
  engine.phase = PHASE_RUNNING;
  return promise;
}

static int get_int(napi_env env, napi_value value, int *out) {
  return napi_get_value_int32(env, value, out) == napi_ok;
}

/* submit(kind, values | undefined, op, wire, root, timeoutMs, checkAgreement): Promise. Copies
 * `values` at once; the caller may reuse its buffer as soon as this returns. */
static napi_value js_submit(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (engine.phase != PHASE_RUNNING) {
    napi_throw_error(env, "MPI_STATE", "MPI is not running in this process");
    return NULL;
  }
  int kind = 0;
  int reduce = 0;
  int wire = 0;
  int root = 0;
  double timeout_ms = INFINITY;
  bool check_agreement = true;
  if (argc < 7 || !get_int(env, argv[0], &kind) || !get_int(env, argv[2], &reduce) || !get_int(env, argv[3], &wire) ||
      !get_int(env, argv[4], &root) || napi_get_value_double(env, argv[5], &timeout_ms) != napi_ok ||
      napi_get_value_bool(env, argv[6], &check_agreement) != napi_ok || kind < ITEM_ALL_REDUCE ||
      kind > ITEM_BARRIER) {
    napi_throw_type_error(env, "MPI_ADDON", "mkor_mpi.submit: bad arguments");
    return NULL;
  }
  item *it = (item *)calloc(1, sizeof(item));
  if (it == NULL) {
    napi_throw_error(env, "MPI_ADDON", "mkor_mpi: out of memory");
    return NULL;
  }
  it->kind = (item_kind)kind;
  it->reduce = (reduce_op)reduce;
  it->wire = (wire_format)wire;
  it->root = root;
  it->check_agreement = check_agreement;
  it->deadline = isfinite(timeout_ms) ? monotonic_seconds() + timeout_ms / 1000.0 : INFINITY;
  if (kind != ITEM_BARRIER) {
    napi_typedarray_type type;
    size_t length = 0;
    void *data = NULL;
    if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
        type != napi_float32_array || length > (size_t)INT32_MAX) {
      free(it);
      napi_throw_type_error(env, "MPI_ADDON", "mkor_mpi.submit: values must be a Float32Array of at most 2^31-1 elements");
      return NULL;
    }
    it->length = (int)length;
    it->values = (float *)malloc(length > 0 ? length * sizeof(float) : sizeof(float));
    if (it->values == NULL) {
      free(it);
      napi_throw_error(env, "MPI_ADDON", "mkor_mpi: out of memory for the collective's buffer");
      return NULL;
    }
    if (length > 0) memcpy(it->values, data, length * sizeof(float));
  }
  return enqueue(env, it);
}

/* close(): Promise<{ finalized, message }>. Queued behind every submitted collective; MPI_Finalize
 * runs once they have completed or timed out. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  (void)info;
  if (engine.phase != PHASE_RUNNING) {
    napi_throw_error(env, "MPI_STATE", "MPI is not running in this process");
    return NULL;
  }
  item *closing = (item *)calloc(1, sizeof(item));
  if (closing == NULL) {
    napi_throw_error(env, "MPI_ADDON", "mkor_mpi: out of memory");
    return NULL;
  }
  closing->kind = ITEM_FINALIZE;
  closing->deadline = INFINITY;
  engine.phase = PHASE_CLOSING;
  return enqueue(env, closing);
}

/* finalizeAtExit(): string. For process 'exit': when MPI runs and no collective is in flight,
 * finalises synchronously and returns "finalized"; otherwise returns why it did not. */
static napi_value js_finalize_at_exit(napi_env env, napi_callback_info info) {
  (void)info;
  const char *status = engine.phase == PHASE_CLOSING ? "closing" : "not running";
  if (engine.phase == PHASE_RUNNING && engine.unsettled > 0) {
    status = "collectives in flight";
  } else if (engine.phase == PHASE_RUNNING) {
    item *closing = (item *)calloc(1, sizeof(item));
    if (closing != NULL) {
      closing->kind = ITEM_FINALIZE;
      closing->deadline = INFINITY;
      engine.phase = PHASE_DONE;
      pthread_mutex_lock(&engine.mutex);
      list_push(&engine.queue, closing);
      pthread_cond_signal(&engine.wake);
      pthread_mutex_unlock(&engine.mutex);
      pthread_join(engine.thread, NULL);
      status = closing->finalized ? "finalized" : "finalize skipped: a failed collective may still be pending in MPI";
      free_item(closing);
    }
  }
  napi_value result;
  CHECK_NAPI(env, napi_create_string_utf8(env, status, NAPI_AUTO_LENGTH, &result));
  return result;
}

/* notifyExit(notice: string): string. For an abnormal process 'exit': the MPI thread sends `notice`
 * (e.g. "exited with code 1 after an uncaught exception: Error: boom") to every other rank, which
 * fail their collectives naming this rank. Waits until the notices left (at most about
 * NOTICE_SEND_SECONDS) and returns "sent", or why not. MPI_Finalize is not called. */
static napi_value js_notify_exit(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  const char *status = "not running";
  if (engine.phase == PHASE_RUNNING) {
    item *notice = (item *)calloc(1, sizeof(item));
    size_t copied = 0;
    if (notice == NULL || argc < 1 ||
        napi_get_value_string_utf8(env, argv[0], notice->message, REASON_CAPACITY, &copied) != napi_ok) {
      free(notice);
      napi_throw_type_error(env, "MPI_ADDON", "mkor_mpi: notifyExit(notice) needs a string");
      return NULL;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)NOTICE_SEND_SECONDS + 1;
    pthread_mutex_lock(&engine.mutex);
    engine.outgoing_notice = notice;
    pthread_cond_signal(&engine.wake);
    int waited = 0;
    while (!notice->finalized && waited == 0) waited = pthread_cond_timedwait(&engine.notice_sent, &engine.mutex, &until);
    const int answered = notice->finalized;
    pthread_mutex_unlock(&engine.mutex);
    if (!answered) {
      status = "the MPI thread did not answer"; /* `notice` stays with the MPI thread; the process exits */
    } else {
      status = notice->outcome == OUTCOME_OK ? "sent" : notice->message;
      napi_value result;
      napi_status made = napi_create_string_utf8(env, status, NAPI_AUTO_LENGTH, &result);
      free(notice);
      if (made != napi_ok) return NULL;
      return result;
    }
  }
  napi_value result;
  CHECK_NAPI(env, napi_create_string_utf8(env, status, NAPI_AUTO_LENGTH, &result));
  return result;
}

static napi_value init_module(napi_env env, napi_value exports) {
  const napi_property_descriptor properties[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"submit", NULL, js_submit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"finalizeAtExit", NULL, js_finalize_at_exit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notifyExit", NULL, js_notify_exit, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK_NAPI(env, napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
